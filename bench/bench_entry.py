"""Benchmark of the entry path through the real processes. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_entry.py [--signals 100]

Own redis-server, paper exchange (PAPER_SPEED=0), signal_ingest and position_engine as separate processes
(COOLDOWN_SEC=0, LOCK_SEC=0, LIMIT_ONLY). Each signal's LIMIT rests below the market, and a `cancel_entry`
command frees the slot before the next one, so every signal goes the whole way: gates, plan (feed read),
PENDING written (Redis transaction + fsynced snapshot), POST /api/v3/order.

Two paths, all wall-clock times taken on this host (time.time() in each process):
1. `XADD signals` -> the engine starts the POST (`entry_sent.wall_sent`), -> the paper exchange's order
   has read its request (`/admin/received`: the issue's figure), and -> the reply reaches
   the engine (`wall_sent` + `ms`).
2. a line appended to deltascout.log -> the same two instants (adds signal_ingest's tail, validation, dedup).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from shared.adapters.market_files import find_market_file, load_bars
from shared.adapters.redis_streams import decode_fields
from shared.domain.messages import Event
from tests.redis_helpers import redis_server
from tests.test_position_engine_support import EngineStack


def _pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def _report(name: str, to_send: list[float], to_reply: list[float], inside: list[float],
            to_received: list[float]) -> None:
    print(f"{name}  (n={len(to_send)})")
    for label, xs in (("-> POST starts   ", to_send), ("-> order received", to_received),
                      ("-> exchange reply", to_reply), ("engine: on_signal -> POST starts", inside)):
        print(f"   {label}  p50 {statistics.median(xs):7.2f} ms   p99 {_pct(xs, 99):7.2f} ms   "
              f"max {max(xs):7.2f} ms")


class Events:
    """Follows the `events` stream with XREAD BLOCK (no polling that would compete for the 2 CPUs)."""

    def __init__(self, s: EngineStack) -> None:
        self.s, self.key, self.last = s, f"{s.prefix}events", "$"
        self.last = (s.r.xrevrange(self.key, "+", "-", count=1) or [(b"0-0", None)])[0][0]

    def next(self, kind: str, timeout: float = 10.0) -> Event:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for _stream, rows in self.s.r.xread({self.key: self.last}, block=1000, count=100) or []:
                for eid, fields in rows:
                    self.last = eid
                    m = decode_fields(fields)
                    if isinstance(m, Event) and m.kind == kind:
                        return m
        raise AssertionError(f"no {kind} event within {timeout}s")


PACE_SEC = 0.05


def _received(s: EngineStack, order_id: int) -> float:
    """Wall time the paper exchange had read the order's request (its /admin/received)."""
    return float(s.admin("/received")[str(order_id)])


def _one(s: EngineStack, ev: Events, fire) -> tuple[float, float, float, float]:
    """Fire one signal, wait for its entry_sent, free the slot; ms to POST start, to the reply, and the engine's
    own share (signal handed to on_signal -> POST start)."""
    t0 = fire()
    planned = ev.next("entry_planned")
    sent_ev = ev.next("entry_sent")
    s.command("cancel_entry", "bench")
    ev.next("entry_aborted")
    sent = (sent_ev.data["wall_sent"] - t0) * 1000
    received = (_received(s, sent_ev.data["order_id"]) - t0) * 1000
    return (sent, sent + sent_ev.data["ms"], (sent_ev.data["wall_sent"] - planned.data["wall_received"]) * 1000,
            received)


def _run(s: EngineStack, n: int, fire_factory) -> tuple[list[float], list[float], list[float], list[float]]:
    out: tuple[list[float], list[float], list[float], list[float]] = ([], [], [], [])
    ev = Events(s)
    for i in range(n):
        for xs, x in zip(out, _one(s, ev, fire_factory(i))):
            xs.append(x)
        # Pacing, not synchronisation: real signals come minutes apart, so the next one must not land while
        # the engine is still writing the previous abort's snapshot (that would measure back-to-back load).
        time.sleep(PACE_SEC)
    return out


def xadd_factory(s: EngineStack, base, ts: float):
    """fire(i): XADD the i-th signal (each a price below the last, so that it rests) and return its wall time."""
    def xadd(i: int):
        def fire() -> float:
            t = time.time()
            s.signal("long", base - i, ts=ts)
            return t
        return fire
    return xadd


def entry_stack(tmp: Path, url: str, **env: str) -> EngineStack:
    """The entry benchmarks' stack: real bars from bar 520, entries that rest (LIMIT_ONLY, no cooldown or lock)."""
    market, _label = find_market_file(ROOT.parent / "shared" / "data" / "market", ROOT / "var" / "market")
    bars, _ = load_bars(market)
    return EngineStack(tmp, url, market, bars[520].ts, COOLDOWN_SEC="0", LOCK_SEC="0", ENTRY_MODE="LIMIT_ONLY",
                       LIVE_ENTRY_TIMEOUT_SEC="3600", PAPER_HISTORY_BARS="400", PAPER_FSYNC="0",
                       # a signal every 50 ms is far over Binance's 100 orders per 10 s: lift both limits here
                       PAPER_ORDER_LIMIT_10S="1000000", ORDER_COUNT_LIMIT_10S="1000000", **env)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--signals", type=int, default=100)
    args = ap.parse_args()
    with redis_server() as url, tempfile.TemporaryDirectory() as tmp:
        s = entry_stack(Path(tmp), url)
        try:
            s.up("signal_ingest")
            s.wait(lambda: s.r.exists(f"{s.prefix}hb:signal_ingest"), 20, "signal_ingest heartbeat")
            base, ts = s.last() - 1000, s.market_ts()

            xadd = xadd_factory(s, base, ts)

            def log_line(i: int):
                def fire() -> float:
                    t = time.time()
                    s.append_peak("long", base - 500 - i, ts=ts)
                    return t
                return fire

            _run(s, 5, xadd)  # warm-up (connections, imports, page cache)
            _report("XADD signals -> entry order", *_run(s, args.signals, xadd))
            _report("deltascout.log line -> entry order", *_run(s, args.signals, log_line))
        finally:
            s.stop_all()


if __name__ == "__main__":
    main()
