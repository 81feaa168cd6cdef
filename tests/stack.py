"""The real stack for integration tests: its own redis-server, the paper exchange and the services, each a
separate process on loopback, with their logs kept for the failure report."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable

import msgspec
import redis
import requests

from shared.adapters import redis_acl
from shared.adapters.redis_streams import decode_fields
from shared.domain.messages import Event
from shared.domain.position import State, decode_state
from tests.redis_helpers import free_port, user_url, wait_until

HOME = Path(__file__).resolve().parents[1]
SERVICES = ("signal_ingest", "position_engine", "exit_manager", "watchdog")


class Stack:
    """Processes of one test. `env` is what every service sees, but for REDIS_URL: each process connects as its
    own ACL user (the product's rules, shared.adapters.redis_acl); `self.r` is the admin's."""

    def __init__(self, tmp: Path, redis_url: str, market_csv: Path, start_ts: int, **overrides: str) -> None:
        self.tmp = tmp
        self.procs: dict[str, subprocess.Popen] = {}
        self.paper_port = free_port()
        self.ws_port = free_port()
        self.prefix = f"t{os.getpid()}{int(time.time() * 1000) % 100000}:"
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("PAPER_", "EXEC_"))},
            "PYTHONPATH": str(HOME), "REDIS_URL": redis_url, "EXEC_PREFIX": self.prefix, "CLOCK": "replay",
            "BINANCE_BASE_URL": f"http://127.0.0.1:{self.paper_port}", "BINANCE_API_KEY": "paper-key",
            "BINANCE_API_SECRET": "paper-secret", "PAPER_PORT": str(self.paper_port), "PAPER_SPEED": "0",
            "PAPER_MARKET_CSV": str(market_csv), "PAPER_START_TS": str(start_ts), "PAPER_HISTORY_BARS": "400",
            "PAPER_STATE_FN": str(tmp / "paper.json"), "PAPER_CLOCK_REDIS_URL": redis_url,
            "AGG_CSV": str(tmp / "aggregated.csv"), "PAPER_FEED_CSV": str(tmp / "aggregated.csv"),
            "DELTASCOUT_LOG": str(tmp / "deltascout.log"), "STATE_FN": str(tmp / "state" / "executor_state.json"),
            "EXEC_LOG": str(tmp / "logs" / "executor.log"),
            "REST_POLL_MS": "50", "HEARTBEAT_TTL_SEC": "5", "PAPER_WS_PORT": str(self.ws_port),
            "BINANCE_WS_URL": f"ws://127.0.0.1:{self.ws_port}/ws-api/v3",
            "WATCHDOG_PROCESSES": "signal_ingest,position_engine,exit_manager",
            # REST_POLL_MS=50 without user_stream: the exit manager's fallback polling needs the IP's whole minute
            "EXIT_REST_WEIGHT_BUDGET_PER_MIN": "6000",
            **overrides,
        }
        self.redis_url = self.env["REDIS_URL"]
        self.env["PAPER_CLOCK_REDIS_URL"] = self.user_url("paper_exchange")
        (tmp / "deltascout.log").touch()
        self.r = redis.Redis.from_url(redis_url)
        self.admin_url = f"http://127.0.0.1:{self.paper_port}/admin"
        self._http = requests.Session()

    # ---- processes --------------------------------------------------------------------------

    def start(self, name: str) -> None:
        module = "services.paper_exchange" if name == "paper_exchange" else f"services.{name}"
        log = open(self.tmp / f"{name}.log", "ab")
        self.procs[name] = subprocess.Popen([sys.executable, "-m", module], cwd=HOME, env=self.env_for(name),
                                            stdout=log, stderr=subprocess.STDOUT)
        log.close()

    def user_url(self, user: str) -> str:
        """This stack's Redis as the product's `user` (its rights cover this stack's prefix)."""
        return user_url(self.redis_url, user, self.prefix)

    def env_for(self, name: str) -> dict[str, str]:
        """The environment of process `name`: `env` with REDIS_URL as its own user."""
        if name == "paper_exchange":
            return dict(self.env)
        return {**self.env, "REDIS_URL": self.user_url(redis_acl.PROCESS_USER.get(name, name))}

    def start_all(self) -> None:
        self.start("paper_exchange")
        wait_until(self._paper_up, 20, 0.02, "paper exchange")
        for s in SERVICES:
            self.start(s)
        wait_until(lambda: all(self.r.exists(f"{self.prefix}hb:{s}") for s in SERVICES), 90, 0.05, "heartbeats")

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        p = self.procs.pop(name)
        p.send_signal(sig)
        p.wait(10)

    def stop_all(self) -> None:
        for name in list(self.procs):
            p = self.procs.pop(name)
            p.terminate()
            try:
                p.wait(5)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self._http.close()
        self.r.close()

    def logs(self) -> str:
        out = []
        for f in sorted(self.tmp.glob("*.log")):
            if f.name == "deltascout.log":
                continue
            text = f.read_text(errors="replace").splitlines()[-40:]
            out.append(f"==== {f.name}\n" + "\n".join(text))
        return "\n".join(out)

    def _paper_up(self) -> bool:
        try:
            return self._http.get(self.admin_url + "/state", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    # ---- the outside world ---------------------------------------------------------------------

    def admin(self, path: str, body: dict | None = None) -> Any:
        if body is None:
            resp = self._http.get(self.admin_url + path, timeout=10)
        else:
            resp = self._http.post(self.admin_url + path, json=body, timeout=30)
        resp.raise_for_status()
        return resp.json()

    def orders(self) -> list[dict]:
        body = self.admin("/orders")
        return body["orders"] if isinstance(body, dict) else body

    def open_orders(self) -> list[dict]:
        return [o for o in self.orders() if o["status"] in ("NEW", "PARTIALLY_FILLED")]

    def market_ts(self) -> int:
        return int(self.admin("/state")["market_ts"])

    def append_peak(self, kind: str, price: Decimal, ts: int | None = None, **extra: Any) -> str:
        when = self.market_ts() if ts is None else ts
        line = msgspec.json.encode({"ts": datetime.fromtimestamp(when, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                                    "action": "PEAK", "source": "DeltaScout", "kind": kind, "price": float(price),
                                    "delta": 1.0, "vol": 2.0, "imb": 0.5, **extra}).decode()
        with open(self.env["DELTASCOUT_LOG"], "a") as fh:
            fh.write(line + "\n")
        return line

    # ---- reading the product ---------------------------------------------------------------------

    def state(self) -> State:
        raw = self.r.get(f"{self.prefix}state")
        return decode_state(raw) if raw else State()

    def snapshot(self) -> State:
        return decode_state(Path(self.env["STATE_FN"]).read_bytes())

    def events(self, kind: str | None = None) -> list[Event]:
        rows = self.r.xrange(f"{self.prefix}events", "-", "+")
        evs = [decode_fields(f) for _id, f in rows if f.get(b"type") == b"event"]
        return [e for e in evs if kind is None or e.kind == kind]

    def wait(self, cond: Callable[[], Any], timeout: float, what: str) -> Any:
        try:
            return wait_until(cond, timeout, 0.02, what)
        except AssertionError as e:
            raise AssertionError(f"{e}\n{self.logs()}") from None
