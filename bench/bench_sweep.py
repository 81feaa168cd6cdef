"""Benchmark: `executorctl sweep` of 8 combinations (SL_PCT x TP_R_LIST) over two days of real bars, run by one
worker, then the same by two workers (each with its own working directory: only the Redis URL is shared, as on
two hosts); the wall times, the scaling ratio and whether both tables are identical.

    .venv/bin/python bench/bench_sweep.py                 # 2025-08-03 + 2 days, 8 combinations
    .venv/bin/python bench/bench_sweep.py --hours 6       # a shorter slice (quicker, same shape)

Its own redis-server on a free port; the signals are bench_replay's (a PEAK long at 30-minute lows, one per
45 minutes at most). Exits 1 when the tables differ or a combination is missing.
"""
from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import redis as redis_client

HOME = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HOME))
sys.path.insert(0, str(HOME / "bench"))

from bench_replay import MARKET, write_inputs  # noqa: E402
from shared.adapters.market_files import load_bars  # noqa: E402
from shared.domain.synthetic_signals import day_slice  # noqa: E402
from tests.redis_helpers import wait_until  # noqa: E402

CTL = [sys.executable, "-m", "services.executorctl"]
GRID = ["--grid", "SL_PCT=0.002,0.003,0.004,0.005", "--grid", "TP_R_LIST=1,2:1.5,3"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pong(port: int) -> bool:
    try:
        return bool(redis_client.Redis(port=port, socket_timeout=1).ping())
    except redis_client.ConnectionError:
        return False


def sweep(url: str, agg: Path, sig: Path, start: int, out: Path, workers: int, tmp: Path) -> tuple[float, dict]:
    base = [*CTL, "sweep", "--redis", url, "--agg", str(agg), "--signals", str(sig), "--start", str(start),
            "--out", str(out), "--replay-timeout", "7200", *GRID]
    subprocess.run([*base, "--no-wait", "--json"], cwd=HOME, check=True, capture_output=True)
    t0 = time.monotonic()
    # workers stay up while the sweep follows: a job run once more (a failed replay) finds a worker
    procs = [subprocess.Popen([*CTL, "sweep-worker", "--redis", url, "--dir", str(tmp / f"w{workers}-{i}")],
                              cwd=HOME, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
             for i in range(workers)]
    try:
        res = subprocess.run([*base, "--json"], cwd=HOME, capture_output=True, text=True, check=False)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(120)
    wall = time.monotonic() - t0
    return wall, json.loads(res.stdout)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--day", default="2025-08-03")
    ap.add_argument("--hours", type=float, default=48.0)
    ap.add_argument("--heatmap", help="keep the two-worker sweep's heatmap here (PNG)")
    a = ap.parse_args()
    bars, _ = load_bars(MARKET)
    lo, first, hi = day_slice(bars, a.day, a.hours)
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as d:
        tmp = Path(d)
        agg, sig, lines = write_inputs(tmp, bars, lo, first, hi, 45)
        redis = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                  "--appendonly", "no"], stdout=subprocess.DEVNULL)
        try:
            wait_until(lambda: _pong(port), 10, 0.02, "the sweep's redis-server")
            print(f"input: {MARKET.name} {a.day} +{a.hours:g} h, {len(lines)} signal lines, 8 combinations")
            w1, one = sweep(f"redis://127.0.0.1:{port}/1", agg, sig, bars[first].ts, tmp / "o1", 1, tmp)
            w2, two = sweep(f"redis://127.0.0.1:{port}/2", agg, sig, bars[first].ts, tmp / "o2", 2, tmp)
            if a.heatmap and two.get("heatmap"):
                Path(a.heatmap).write_bytes(Path(two["heatmap"]).read_bytes())
        finally:
            redis.terminate()
            redis.wait()
    key = lambda doc: sorted((r["id"], r["trades"], r["net_r"], r["win_rate"], r["max_drawdown"], r["fees"])  # noqa: E731
                             for r in doc["rows"])
    done = all(r["status"] == "done" for r in one["rows"] + two["rows"])
    same = key(one) == key(two)
    for r in sorted(one["rows"], key=lambda r: r["id"]):
        print(f"  SL_PCT={r['SL_PCT']:<6} TP_R_LIST={r['TP_R_LIST']:<6} trades {r['trades']:>3} net R {r['net_r']:>8} "
              f"win rate {r['win_rate']:>6} max dd {r['max_drawdown']:>9} fees {r['fees']}")
    retried = len(one.get("retried", {})) + len(two.get("retried", {}))
    print(f"combinations run once more (a replay failed, then passed): {retried}")
    print(f"FIGURE sweep_1_worker_sec={w1:.1f} sweep_2_workers_sec={w2:.1f} scaling={w1 / w2:.2f} "
          f"identical={same} all_done={done}")
    return 0 if same and done else 1


if __name__ == "__main__":
    sys.exit(main())
