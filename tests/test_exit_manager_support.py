"""Helpers of the exit manager's integration tests (real Redis, the real paper exchange, the services as
separate processes): open a long, drive the market, and check a closed trade against the exchange's truth."""
from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import pytest

from shared.adapters.notify import queue as notify_queue
from shared.adapters.redis_streams import decode_fields
from shared.domain.order_ids import trade_key_of
from shared.domain.position import Position
from tests.redis_helpers import wait_until
from tests.stack import Stack

OPEN = ("NEW", "PARTIALLY_FILLED")
HOOK = "http://127.0.0.1:9/exit-manager-test-hook"  # nothing listens: alerts stay queued for the test to read
STEP = Decimal("0.00001")


def start_stack(tmp: Path, redis_url: str, market_file: Path, start_ts: int, exit_manager: bool = True,
                **env: str) -> Stack:
    """Paper exchange, ingest, engine and (unless told not to) the exit manager; no watchdog (it only alerts)."""
    s = Stack(tmp, redis_url, market_file, start_ts, **{"N8N_WEBHOOK_URL": HOOK, **env})
    s.start("paper_exchange")
    wait_until(s._paper_up, 20, 0.02, "paper exchange")
    names = ["signal_ingest", "position_engine"] + (["exit_manager"] if exit_manager else [])
    for name in names:
        s.start(name)
    s.wait(lambda: all(s.r.exists(f"{s.prefix}hb:{n}") for n in names), 30, "heartbeats")
    return s


def restart_exit_manager(s: Stack) -> None:
    s.r.delete(f"{s.prefix}hb:exit_manager")
    s.start("exit_manager")
    s.wait(lambda: s.r.exists(f"{s.prefix}hb:exit_manager"), 30, "exit manager heartbeat")


def last_price(s: Stack) -> Decimal:
    return Decimal(s.admin("/state")["last"])


def price(s: Stack, p: Decimal, gap: bool = False) -> None:
    """One price point at the current market time: the exchange matches everything the move traded through,
    or (`gap`) only the new price, as after a jump."""
    s.admin("/price", {"price": str(p.quantize(Decimal("0.01"))), "gap": gap})


MARGIN = {"TRADE_MODE": "margin", "MARGIN_BORROW_MODE": "manual", "MARGIN_SIDE_EFFECT": "NO_SIDE_EFFECT"}
ISOLATED_AUTO = {"TRADE_MODE": "margin", "MARGIN_ISOLATED": "true", "MARGIN_BORROW_MODE": "auto",
                 "MARGIN_SIDE_EFFECT": "AUTO_BORROW_REPAY"}


SIDES = [pytest.param("long", id="long-spot"), pytest.param("short", id="short-margin"),
         pytest.param("long/isolated", id="long-isolated-margin-auto")]


def make_side(make, case: str, **env: str) -> tuple[Stack, str]:
    """The stack for a case: a long on spot, a short on cross margin with a manual borrow, a long on isolated
    margin with the exchange borrowing (auto); and the case's side."""
    wallet = {"short": MARGIN, "long/isolated": ISOLATED_AUTO}.get(case, {})
    return make(**wallet, **env), case.split("/")[0]


def open_long(s: Stack, legs_resting: bool = True, side: str = "long") -> Position:
    """A PEAK long (or short) at the current price; returns the filled position (with its three legs resting)."""
    s.append_peak(side, last_price(s))
    s.wait(lambda: (p := s.state().position) is not None and p.status == "OPEN_FILLED", 20, "entry filled")
    if legs_resting:
        s.wait(lambda: legs_placed(s), 20, "three legs resting")
    return s.state().position


def legs_placed(s: Stack) -> bool:
    p = s.state().position
    return p is not None and len(p.legs) == 3 and all(lg.status == "PLACED" for lg in p.legs)


def leg(s: Stack, name: str):
    return next(lg for lg in s.state().position.legs if lg.name == name)


def events(s: Stack, kind: str, trade_key: str | None = None) -> list:
    return [e for e in s.events(kind) if trade_key is None or e.trade_key == trade_key]


def wait_event(s: Stack, kind: str, timeout: float = 20, **match) -> object:
    def found():
        return next((e for e in s.events(kind) if all(e.data.get(k) == v for k, v in match.items())), None)
    return s.wait(found, timeout, f"event {kind} {match}")


def wait_closed(s: Stack, timeout: float = 30) -> None:
    s.wait(lambda: s.state().position is None and s.state().last_closed is not None, timeout, "position closed")


def trade_orders(s: Stack, trade_key: str) -> list[dict]:
    return [o for o in s.orders() if trade_key_of(o["clientOrderId"]) == trade_key]


def alerts(s: Stack, trade_key: str) -> list[dict]:
    """Webhook payloads queued for `trade_key` (the notifier is not running, so they stay queued)."""
    q = notify_queue(s.r, s.prefix)
    return [j.args[0] for j in q.jobs if j.args and j.args[0].get("trade_key") == trade_key]


def assert_closed(s: Stack, trade_key: str, reason: str) -> None:
    """Nothing of the trade open, the state closed, and the recorded result equal to the exchange's fills."""
    st = s.state()
    assert st.position is None, st.position
    lc = st.last_closed
    assert lc is not None and lc.trade_key == trade_key
    assert lc.exit_reason.startswith(reason), lc.exit_reason
    assert st.cooldown_until > lc.closed_at, "cooldown not started"
    rows = s.r.xrange(f"{s.prefix}positions", "-", "+")
    closed = [m for _i, f in rows if (m := decode_fields(f)).kind == "CLOSED" and m.trade_key == trade_key]
    assert len(closed) == 1, "one CLOSED hand-over expected"
    assert [o for o in s.open_orders()] == [], "orders still open"
    fills = [o for o in s.orders() if Decimal(o["executedQty"]) > 0]
    enter, leave = ("BUY", "SELL") if lc.side == "long" else ("SELL", "BUY")
    entered = sum(Decimal(o["executedQty"]) for o in fills if o["side"] == enter)
    exited = sum(Decimal(o["executedQty"]) for o in fills if o["side"] == leave)
    quote = sum(Decimal(o["cummulativeQuoteQty"]) for o in fills if o["side"] == leave)
    assert exited == lc.qty, (exited, lc.qty)
    if lc.side == "long":
        assert Decimal(0) <= entered - lc.entry_fee_base - exited < STEP, "position left open (beyond dust)"
    else:  # the buys are grossed up for their commission in the base asset: what is received covers the short
        received = exited - _base_fee(fills, leave)
        assert Decimal(0) <= received - entered < STEP, ("short not covered (or over-bought)", received, entered)
    assert abs(quote / exited - lc.avg_exit) < Decimal("0.0001")
    sign = 1 if lc.side == "long" else -1
    assert abs(sign * (quote - lc.avg_entry * exited) - lc.pnl_quote) < Decimal("0.001")
    if lc.side == "long" and s.env.get("TRADE_MODE", "spot") == "spot":
        bal = s.admin("/state")["balances"]["BTC"]
        assert Decimal(bal["locked"]) == 0 and Decimal(bal["free"]) == entered - lc.entry_fee_base - exited
    if s.env.get("TRADE_MODE") == "margin":
        _assert_repaid(s, trade_key, fills, leave)


def _base_fee(fills: list[dict], side: str) -> Decimal:
    return sum((Decimal(f["commission"]) for o in fills if o["side"] == side for f in o["fills"]
                if f["commissionAsset"] == "BTC"), Decimal(0))


def _assert_repaid(s: Stack, trade_key: str, fills: list[dict], leave: str) -> None:
    """No debt left: a manual borrow is repaid in full (a short's buys were sized to cover their base-asset
    commission); in auto mode the exits' AUTO_REPAY paid back what the entry borrowed."""
    wallet = "ISOLATED" if s.env.get("MARGIN_ISOLATED") == "true" else "CROSS"
    debt = s.admin("/state")["margin"][wallet]
    if s.env.get("MARGIN_BORROW_MODE") == "manual":
        repaid = [e for e in s.events("margin_repaid") if e.trade_key == trade_key]
        assert len(repaid) == 1
        assert Decimal(str(repaid[0].data["debt_left"])) == 0, repaid[0].data
    for asset in ("BTC", "USDC"):
        assert Decimal(debt[asset]["borrowed"]) + Decimal(debt[asset]["interest"]) == 0, (asset, debt[asset])


def assert_no_duplicates(s: Stack, trade_key: str, held: Decimal, side: str = "long") -> None:
    """Per leg and attempt at most one order list / stop, and never more sold (bought back) than held."""
    orders = trade_orders(s, trade_key)
    per_id = Counter(o["clientOrderId"] for o in orders)
    assert max(per_id.values()) == 1, f"client id used twice: {per_id.most_common(3)}"
    lists = Counter(o["orderListId"] for o in orders if o["orderListId"] != -1)
    assert all(n == 2 for n in lists.values()), lists
    leave = "SELL" if side == "long" else "BUY"
    sold = sum(Decimal(o["executedQty"]) for o in s.orders() if o["side"] == leave)
    if side == "short":  # the buys are grossed up for their base-asset commission (at most 1 %, one step)
        held = held / Decimal("0.99") + STEP
    assert sold <= held, (sold, held)


def stop_history(s: Stack, trade_key: str, code: str) -> list[Decimal]:
    """Stop prices of a leg's stop orders, by attempt (code s1 / s2 / tr)."""
    stops = [o for o in trade_orders(s, trade_key) if o["clientOrderId"].rsplit("-", 2)[1] == code]
    stops.sort(key=lambda o: int(o["clientOrderId"].rsplit("-", 1)[1]))
    return [Decimal(o["stopPrice"]) for o in stops]


def assert_stops_only_tighten(s: Stack, trade_key: str, side: str = "long") -> None:
    for code in ("s1", "s2", "tr"):
        h = stop_history(s, trade_key, code)
        assert h == sorted(h, reverse=side == "short"), f"{code} stop moved against the {side}: {h}"


def settle(seconds: float = 0.3) -> None:
    time.sleep(seconds)  # let the exit manager's 50 ms ticks see a price point before the next one


@pytest.fixture()
def make(tmp_path: Path, redis_url, market_file, market_bars, moment):
    """A factory of stacks (stopped at the end of the test) starting at the demo's moment in the data."""
    stacks: list[Stack] = []

    def _make(**env: str) -> Stack:
        s = start_stack(tmp_path, redis_url, market_file, market_bars[moment.index + 1].ts, **env)
        stacks.append(s)
        return s
    yield _make
    for s in stacks:
        s.stop_all()
