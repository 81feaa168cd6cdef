"""Benchmark: p50/p99 of one signed order round trip (a LIMIT placed, reply received) against the paper
exchange; the cancel that follows each placement is timed separately.

    python -m services.paper_exchange.bench_roundtrip [iterations]

Starts the exchange as its own process on loopback (temporary state/feed files) and measures
with the real client, once with the journal fdatasync'ed per mutation (PAPER_FSYNC=1, the default)
and once flushed to the OS only (PAPER_FSYNC=0).
"""
from __future__ import annotations

import os
import select
import subprocess
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from shared.adapters.binance_rest import BinanceClient
from shared.adapters.market_files import write_bars
from shared.domain.synthetic_market import generate

SYMBOL = "BTCUSDC"


def _percentile(samples: list[float], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))]


def _start_server(tmp: str, fsync: bool) -> tuple[subprocess.Popen, str]:
    """The paper exchange as its own process (as in production), on a free port."""
    market = Path(tmp) / "bench.aggregated.csv"
    write_bars(market, generate(400, seed=3))
    env = {**os.environ, "PAPER_PORT": "0", "PAPER_SPEED": "0", "PAPER_MARKET_CSV": str(market),
           "PAPER_FEED_CSV": f"{tmp}/feed.csv", "PAPER_STATE_FN": f"{tmp}/state.json",
           "PAPER_API_KEY": "bench-key", "PAPER_API_SECRET": "bench-secret", "PAPER_FSYNC": "1" if fsync else "0",
           # hundreds of orders a second: far over Binance's 100 per 10 s, which is not what is measured here
           "PAPER_ORDER_LIMIT_10S": "1000000000", "PAPER_ORDER_LIMIT_1D": "1000000000"}
    proc = subprocess.Popen([sys.executable, "-m", "services.paper_exchange"], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if select.select([proc.stdout], [], [], 0.5)[0]:
            line = proc.stdout.readline()
            if not line:
                break
            if "listening on" in line:
                return proc, line.strip().split()[-1]
    proc.kill()
    raise RuntimeError("paper exchange did not start")


def run(iterations: int = 500, fsync: bool = True) -> tuple[float, float, float, float]:
    """Return (place p50, place p99, cancel p50, cancel p99) in milliseconds."""
    with tempfile.TemporaryDirectory() as tmp:
        proc, url = _start_server(tmp, fsync)
        client = BinanceClient(url, "bench-key", "bench-secret")
        try:
            bid, _ = client.book_ticker(SYMBOL)
            price, qty = bid - Decimal(1000), Decimal("0.001")
            places: list[float] = []
            cancels: list[float] = []
            for i in range(iterations + 20):
                t0 = time.perf_counter()
                o = client.place_order(SYMBOL, "BUY", "LIMIT", qty, price=price, time_in_force="GTC",
                                       client_order_id=f"bench-{i}")
                t1 = time.perf_counter()
                client.cancel_order(SYMBOL, order_id=o.order_id)
                t2 = time.perf_counter()
                if i >= 20:  # warm-up: connection set-up and first-call costs
                    places.append((t1 - t0) * 1000)
                    cancels.append((t2 - t1) * 1000)
        finally:
            client.close()
            proc.terminate()
            proc.wait(timeout=10)
    return (_percentile(places, 0.50), _percentile(places, 0.99),
            _percentile(cancels, 0.50), _percentile(cancels, 0.99))


def main() -> None:
    """Print the figures for both journal durability modes."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    for fsync in (True, False):
        p50, p99, c50, c99 = run(n, fsync)
        mode = "PAPER_FSYNC=1 (fdatasync per order)" if fsync else "PAPER_FSYNC=0 (flush to OS only)"
        print(f"{mode}: signed order round trip x{n}: p50 {p50:.2f} ms, p99 {p99:.2f} ms"
              f" -> {'OK' if p50 < 2 else 'MISSED'} (target p50 < 2 ms); its cancel: p50 {c50:.2f} ms, p99 {c99:.2f} ms")


if __name__ == "__main__":
    main()
