"""Support for the position_engine integration tests (no tests here): a small stack of the paper exchange and
position_engine (plus exit_manager when a hand-over must complete) on a real redis-server, and helpers that
feed it signals and commands and read what the exchange and the product recorded."""
from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from shared.adapters.notify import queue as notify_queue
from shared.adapters.redis_streams import decode_fields, publish
from shared.adapters.state_store import StateStore
from shared.domain.commands import TARGETED, new_command
from shared.domain.messages import Event, PositionEvent, Signal
from shared.domain.position import State
from tests.stack import Stack

START_BAR = 520          # replay starts here (PAPER_HISTORY_BARS=400 before it are the feed's history)
OPEN = ("NEW", "PARTIALLY_FILLED")


class EngineStack(Stack):
    """A Stack that starts only what an entry test needs and speaks to the engine directly."""

    _seq = 0

    def up(self, *services: str) -> EngineStack:
        self.start("paper_exchange")
        self.wait(self._paper_up, 20, "paper exchange")
        for s in ("position_engine", *services):
            self.start(s)
        self.wait_ready()
        return self

    def wait_ready(self, after: int = 0) -> None:
        """Wait until a (re)started engine reconciled and entered its loop (its `engine_ready` event)."""
        self.wait(lambda: len(self.events("engine_ready")) > after, 30, "engine_ready")
        if "exit_manager" in self.procs:
            self.wait(lambda: self.events("exit_manager_ready"), 30, "exit_manager_ready")

    def restart_paper(self) -> None:
        self.start("paper_exchange")
        self.wait(self._paper_up, 20, "paper exchange back")

    # ---- input ----------------------------------------------------------------------------------

    def signal(self, kind: str, price: Decimal, key: str | None = None, ts: float | None = None) -> str:
        """XADD a validated signal (what signal_ingest publishes) at `ts` (default: market time); its key."""
        EngineStack._seq += 1
        key = key or f"PEAK|test-{EngineStack._seq}-{time.time_ns()}|{kind}|{price}"
        ts = float(self.market_ts()) if ts is None else ts
        sig = Signal(key=key, ts=ts, kind=kind, price=Decimal(price), read_at=time.time())
        publish(self.r, f"{self.prefix}signals", sig, 10_000)
        return key

    def command(self, cmd: str, reason: str = "test", trade_key: str | None = None, ttl: float = 60.0) -> None:
        """XADD a command as executorctl writes it: for the current trade (unless `trade_key`), expiring `ttl`
        seconds of the stack's (replay) clock from now."""
        pos = self.state().position
        target = trade_key if trade_key is not None else (pos.trade_key if pos is not None and cmd in TARGETED else "")
        raw = self.r.get(f"{self.prefix}clock")
        now = int(raw) / 1000 if raw is not None else time.time()
        publish(self.r, f"{self.prefix}commands", new_command(cmd, now, ttl, "pytest", reason, target), 10_000)

    def price(self, p: Decimal) -> dict:
        return self.admin("/price", {"price": str(p)})

    def last(self) -> Decimal:
        return Decimal(self.admin("/state")["last"])

    def fault(self, **body: Any) -> None:
        self.admin("/faults", body)

    # ---- output ---------------------------------------------------------------------------------

    def entry_orders(self) -> list[dict]:
        return [o for o in self.orders() if "-en-" in o["clientOrderId"]]

    def positions(self) -> list[PositionEvent]:
        rows = self.r.xrange(f"{self.prefix}positions", "-", "+")
        return [m for m in (decode_fields(f) for _id, f in rows) if isinstance(m, PositionEvent)]

    def position_kinds(self, trade_key: str | None = None) -> list[str]:
        return [p.kind for p in self.positions() if trade_key is None or p.trade_key == trade_key]

    def event_for(self, kind: str, **match: Any) -> Event | None:
        for e in self.events(kind):
            if all(e.data.get(k) == v for k, v in match.items()):
                return e
        return None

    def wait_event(self, kind: str, timeout: float = 15, **match: Any) -> Event:
        return self.wait(lambda: self.event_for(kind, **match), timeout, f"event {kind} {match}")

    def ignored(self, signal_key: str, timeout: float = 15) -> str:
        """The reason the engine recorded for ignoring `signal_key`."""
        return self.wait_event("signal_ignored", timeout, signal_key=signal_key).data["reason"]

    def status(self) -> str | None:
        p = self.state().position
        return p.status if p is not None else None

    def wait_status(self, status: str | None, timeout: float = 15) -> State:
        self.wait(lambda: self.status() == status, timeout, f"position status {status}")
        return self.state()

    def notifications(self) -> list[dict]:
        """Webhook payloads queued for the notifier (no worker runs in these tests, so they stay queued)."""
        return [j.args[0] for j in notify_queue(self.r, self.prefix).jobs]

    def wait_notified(self, event: str, trade_key: str | None = None, timeout: float = 10) -> dict:
        """The queued webhook payload of `event` (for `trade_key`), waiting for it."""
        def found():
            return next((n for n in self.notifications()
                         if n["event"] == event and (trade_key is None or n["trade_key"] == trade_key)), None)
        return self.wait(found, timeout, f"webhook {event} queued")

    def store(self) -> StateStore:
        """The state store as another process of the product would use it (the test acting as that process)."""
        return StateStore(self.r, f"{self.prefix}state", self.env["STATE_FN"], "pytest")

    def margin_wallet(self, account: str = "CROSS") -> dict:
        return self.admin("/state")["margin"].get(account, {})


@pytest.fixture(name="make_stack")
def make_stack_fixture(tmp_path: Path, redis_url, market_file, market_bars):
    """`make_stack(**env)` -> an EngineStack (not started) replaying from START_BAR; stopped after the test."""
    made: list[EngineStack] = []

    def make(**env: str) -> EngineStack:
        defaults = {"COOLDOWN_SEC": "0", "LOCK_SEC": "0", "ENTRY_MODE": "LIMIT_ONLY", "LIVE_ENTRY_TIMEOUT_SEC": "3600",
                    "N8N_WEBHOOK_URL": "http://127.0.0.1:9/hook", "PAPER_HISTORY_BARS": "400"}
        s = EngineStack(tmp_path / f"s{len(made)}", redis_url, market_file, market_bars[START_BAR].ts,
                        **{**defaults, **env})
        made.append(s)
        return s

    (tmp_path / "s0").mkdir()
    for i in range(1, 4):
        (tmp_path / f"s{i}").mkdir()
    yield make
    for s in made:
        s.stop_all()


def far_below(market_bars, points: int = 40, margin: Decimal = Decimal(300)) -> Decimal:
    """A long signal price whose LIMIT rests untouched while the replay plays the next `points` price points."""
    bars = market_bars[START_BAR - 1:START_BAR + points // 4 + 2]
    return (min(b.low for b in bars) - margin).quantize(Decimal("0.01"))


def executed(orders: list[dict]) -> Decimal:
    return sum((Decimal(o["executedQty"]) for o in orders), Decimal(0))
