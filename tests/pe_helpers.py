"""Shared helpers for paper exchange tests: a real server on a free loopback port, clients, polling.

A plain module (not conftest.py): test files import what they need from here.
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.redis_helpers import wait_until  # noqa: F401 - re-exported for the paper exchange tests
from shared.adapters.binance_rest import BinanceClient
from shared.adapters.market_files import write_bars
from shared.domain.bars import Bar
from shared.domain.synthetic_market import generate
from services.paper_exchange.server import PaperServer
from services.paper_exchange.settings import from_env

REPO = Path(__file__).resolve().parents[1]
KEY, SECRET = "test-key-123", "test-secret-456"
SYMBOL = "BTCUSDC"
HISTORY = 50


def sample_bars(n: int = 200, seed: int = 11) -> list[Bar]:
    """Real rows from the seeded synthetic generator."""
    return generate(n, seed=seed)


def paper_env(tmp: Path, **overrides: str) -> dict[str, str]:
    """Env for a manual-speed paper exchange with its own files under `tmp`."""
    market = tmp / "market.aggregated.csv"
    if not market.exists():
        write_bars(market, sample_bars())
    env = {
        "PAPER_HOST": "127.0.0.1", "PAPER_PORT": "0", "PAPER_API_KEY": KEY, "PAPER_API_SECRET": SECRET,
        "PAPER_SPEED": "0", "PAPER_MARKET_CSV": str(market), "PAPER_FEED_CSV": str(tmp / "feed" / "aggregated.csv"),
        "PAPER_STATE_FN": str(tmp / "state" / "paper.json"), "PAPER_HISTORY_BARS": str(HISTORY),
        "PAPER_BALANCES": "USDC=10000,BTC=0.5", "PAPER_SLIPPAGE_BPS": "1", "PAPER_FEE_RATE": "0.001",
    }
    env.update(overrides)
    return env


class Paper:
    """A running paper exchange plus convenience admin calls."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.server = PaperServer(from_env(env))
        self.port = self.server.start()
        self.url = f"http://127.0.0.1:{self.port}"
        self._http = requests.Session()
        self._clients: list[BinanceClient] = []

    def client(self, **kw: Any) -> BinanceClient:
        """A real BinanceClient for this exchange's account."""
        c = BinanceClient(self.url, self.env["PAPER_API_KEY"], self.env["PAPER_API_SECRET"], **kw)
        self._clients.append(c)
        return c

    def get(self, path: str) -> Any:
        """GET an admin endpoint."""
        r = self._http.get(self.url + path, timeout=5)
        r.raise_for_status()
        return r.json()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        """POST JSON to an admin endpoint."""
        r = self._http.post(self.url + path, json=body, timeout=5)
        r.raise_for_status()
        return r.json()

    def price(self, p: str | Decimal, gap: bool = False) -> dict[str, Any]:
        """Push a price point (`gap`: a jump with no trades in between)."""
        return self.post("/admin/price", {"price": str(p), "gap": gap})

    def last(self) -> Decimal:
        """Current last price."""
        return Decimal(self.get("/admin/state")["last"])

    def order(self, client_order_id: str) -> dict[str, Any]:
        """The exchange's truth about one order (latest with that client id)."""
        matches = [o for o in self.get("/admin/orders") if o["clientOrderId"] == client_order_id]
        assert matches, f"no order {client_order_id!r} on the exchange"
        return matches[-1]

    def balances(self) -> dict[str, tuple[Decimal, Decimal]]:
        """asset -> (free, locked) from /admin/state."""
        b = self.get("/admin/state")["balances"]
        return {a: (Decimal(v["free"]), Decimal(v["locked"])) for a, v in b.items()}

    def stop(self) -> None:
        """Shut the server down and close clients."""
        for c in self._clients:
            c.close()
        self._http.close()
        self.server.stop()


@pytest.fixture
def pe(tmp_path: Path):
    """A fresh paper exchange (manual speed) for one test."""
    p = Paper(paper_env(tmp_path))
    yield p
    p.stop()


def start_process(env: dict[str, str], timeout: float = 20.0) -> tuple[subprocess.Popen, str]:
    """`python -m services.paper_exchange` as a child process; returns (process, base URL) once it listens."""
    full = {**os.environ, **env, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "services.paper_exchange"], cwd=REPO, env=full,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.2)[0]:
            line = proc.stdout.readline()
            if not line:
                break
            if "listening on" in line:
                return proc, line.strip().split()[-1]
    proc.kill()
    proc.wait(timeout=5)
    raise AssertionError("paper exchange process did not report its port")
