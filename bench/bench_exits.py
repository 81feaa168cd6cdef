"""Benchmark of the exit manager on the real stack (own redis-server, the paper exchange, ingest, engine and
exit manager as separate processes). Prints figures; asserts nothing.

    .venv/bin/python bench/bench_exits.py [--trades 40]

Each trade: a PEAK long fills at once; TP1 fills (one price point through it), the other stops move to
break-even, then the price comes back to break-even and the rest is stopped out.

1. unprotected window: from the hand-over (the ENTRY_FILLED entry on `positions`, written in the same Redis
   transaction as the engine's OPEN_FILLED state; its stream id is Redis' wall clock in ms) to the first stop
   accepted by the exchange (`leg_placed` on `events`), and to all three legs resting
2. stop-move window: what the exit manager logs as `stop_move_window` (ms from the cancel of the old stop to the
   new one accepted; `atomic` = one cancelReplace) during the break-even moves
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from shared.domain.moments import find_moment
from shared.adapters.market_files import find_market_file, load_bars
from shared.adapters.redis_streams import decode_fields
from shared.config import load_config, symbol_filters
from tests.redis_helpers import redis_server
from tests.stack import Stack
from tests.test_exit_manager_support import legs_placed, price, start_stack

TICK = Decimal("0.01")


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, max(0, round(q * (len(xs) - 1))))]


def show(name: str, xs: list[float]) -> None:
    if not xs:
        print(f"{name:<44} (no samples)")
        return
    print(f"{name:<44} n={len(xs):<3} p50={pct(xs, .5):7.2f} ms  p99={pct(xs, .99):7.2f} ms  "
          f"max={max(xs):7.2f} ms  mean={statistics.mean(xs):7.2f} ms")


def one_trade(s: Stack, used: set[Decimal], timeout: float = 20) -> None:
    closed = s.state().closed_count
    sig = Decimal(s.admin("/state")["last"]).quantize(Decimal("0.1"))
    while sig in used:  # ingest dedups on (minute, kind, price to 0.1): market time stands still here
        sig += Decimal("0.1")
    used.add(sig)
    s.append_peak("long", sig)
    s.wait(lambda: legs_placed(s), timeout, "legs resting")
    pos = s.state().position
    price(s, pos.tp1 + TICK)
    s.wait(lambda: (p := s.state().position) is not None and p.be_done and
           all(lg.status in ("PLACED", "DONE") for lg in p.legs), timeout, "break-even done")
    price(s, next(lg for lg in s.state().position.legs if lg.name == "trail").stop_price)
    s.wait(lambda: s.state().closed_count > closed, timeout, "closed")


def stream_ms(entry_id: bytes) -> int:
    return int(entry_id.split(b"-")[0])


def collect(s: Stack) -> tuple[list[float], list[float], list[float], list[float]]:
    filled: dict[str, int] = {}
    for eid, f in s.r.xrange(f"{s.prefix}positions", "-", "+"):
        m = decode_fields(f)
        if m.kind == "ENTRY_FILLED":
            filled[m.trade_key] = stream_ms(eid)
    first: dict[str, int] = {}
    placed: dict[str, list[int]] = {}
    moves, atomic = [], []
    for eid, f in s.r.xrange(f"{s.prefix}events", "-", "+"):
        if f.get(b"type") != b"event":
            continue
        e = decode_fields(f)
        if e.kind == "leg_placed" and e.data.get("attempt") == 0:
            first.setdefault(e.trade_key, stream_ms(eid))
            placed.setdefault(e.trade_key, []).append(stream_ms(eid))
        elif e.kind == "stop_move_window":
            (atomic if e.data.get("atomic") else moves).append(float(e.data["ms"]))
    unprotected = [first[k] - filled[k] for k in filled if k in first]
    all_legs = [max(placed[k]) - filled[k] for k in filled if len(placed.get(k, [])) == 3]
    return unprotected, all_legs, moves, atomic


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trades", type=int, default=40)
    args = ap.parse_args()
    market, label = find_market_file(ROOT.parent / "shared" / "data" / "market", ROOT / "var" / "market")
    bars, _bad = load_bars(market)
    cfg = load_config({})
    f = symbol_filters(cfg)
    m = find_moment(bars, cfg, f)
    with tempfile.TemporaryDirectory() as tmp, redis_server() as url:
        s = start_stack(Path(tmp), url, market, bars[m.index + 1].ts, COOLDOWN_SEC="0", LOCK_SEC="0",
                        N8N_WEBHOOK_URL="")
        try:
            t0 = time.monotonic()
            used: set[Decimal] = set()
            for _ in range(args.trades):
                one_trade(s, used)
            wall = time.monotonic() - t0
            unprotected, all_legs, moves, atomic = collect(s)
        finally:
            s.stop_all()
    print(f"market data: {market.name} ({label}); {args.trades} trades in {wall:.1f} s; REST_POLL_MS=50, loopback")
    show("unprotected window: fill -> first stop", [float(x) for x in unprotected])
    show("fill -> all three legs resting", [float(x) for x in all_legs])
    show("stop-move window, OCO cancel + place", moves)
    show("stop-move window, trail cancelReplace", atomic)


if __name__ == "__main__":
    main()
