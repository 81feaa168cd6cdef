"""Benchmark: a whole day of real minute bars with its signals through `executorctl replay` (lock-step clock),
at the fastest speed; optionally the same input at another speed (e.g. 60x), and whether the trades are identical.

    .venv/bin/python bench/bench_replay.py                         # 2025-08-03, fastest: wall time, speed
    .venv/bin/python bench/bench_replay.py --compare 60            # + the same day at 60x (24 min) and the diff
    .venv/bin/python bench/bench_replay.py --check-jumps           # + the same day playing every point singly
    .venv/bin/python bench/bench_replay.py --hours 3 --compare 60  # a 3-hour slice
    .venv/bin/python bench/bench_replay.py --month                 # the 30-day file: 28 days, fastest (issue 25)

The signals are generated, not DeltaScout's: a PEAK long at the close of every bar that is the lowest low of the
last 30 minutes, at most one every 45 minutes (--gap), so the day has a dozen or so, some traded, some
ignored (position open, cooldown). Prints the figures; exits 1 only when --compare finds different trades.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOME = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HOME))

from shared.adapters.market_files import load_bars, write_bars  # noqa: E402
from shared.domain.synthetic_signals import day_slice, peak_lines  # noqa: E402

MARKET = HOME.parent / "shared" / "data" / "market" / "BTCUSDT-1m-2025-08-01_2025-08-10.aggregated.csv"
MONTH = HOME.parent / "shared" / "data" / "market" / "BTCUSDT-1m-2024-11-30_2024-12-29.aggregated.csv"


def peaks(bars, start: int, gap_min: int) -> list[str]:
    """PEAK longs at local lows (lowest low of the previous 30 bars), at most one per `gap_min` minutes."""
    return peak_lines(bars, start, gap_min)


def write_inputs(tmp: Path, bars, lo: int, first: int, hi: int, gap: int) -> tuple[Path, Path, list[str]]:
    """The market slice bars[lo:hi] and its generated signal lines (from bar `first`) as files in `tmp`."""
    agg, sig = tmp / "day.aggregated.csv", tmp / "signals.jsonl"
    write_bars(agg, bars[lo:hi])
    lines = peaks(bars[lo:hi], first - lo, gap)
    sig.write_text("\n".join(lines) + "\n")
    return agg, sig, lines


def replay(agg: Path, signals: Path, speed: str, run_dir: Path, start: int, extra: list[str] | None = None) -> dict:
    t0 = time.monotonic()
    res = subprocess.run([sys.executable, "-m", "services.executorctl", "replay", "--agg", str(agg), "--signals",
                          str(signals), "--speed", speed, "--start", str(start), "--dir", str(run_dir), "--timeout",
                          "7200", "--json", *(extra or [])],
                         cwd=HOME, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"replay at {speed} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    doc = json.loads(res.stdout)
    doc["command_sec"] = time.monotonic() - t0
    return doc


def trades_of(doc: dict) -> list[tuple]:
    """What must not depend on the speed: each trade's key, exits per leg, PnL, reason."""
    return [(t["trade_key"], t["side"], t["avg_entry"], t["entry_qty"],
             tuple(sorted((k, str(v.get("qty")), str(v.get("price"))) for k, v in t["legs"].items())),
             t["gross_pnl"], t["net_pnl"], t["reason"]) for t in doc["trades"]]


def show(label: str, doc: dict) -> None:
    rp, tot = doc["replay"], doc["totals"]
    print(f"{label}: {rp['points']} points, {(rp['market_reached'] - rp['start']) / 3600:.2f} h of market in "
          f"{rp['wall_sec']:.1f} s wall (command {doc['command_sec']:.1f} s incl. start/stop and report), "
          f"achieved {rp['achieved_speed']}x; lock-step timeouts {len(rp['lockstep_timeouts'])}")
    print(f"{label}: {tot['trades']} trades, net {tot['net_pnl']}, signal lines {rp['signal_lines']}")
    res = rp.get("resources") or {}
    if res:
        rss = ", ".join(f"{k} {v / 1024:.0f}" for k, v in sorted(res.get("rss_peak_kb", {}).items()))
        print(f"{label}: peak RSS MiB per process: {rss}; redis used_memory peak "
              f"{res.get('redis_used_memory_peak', 0) / 2**20:.1f} MiB")
        print(f"FIGURE replay_rss_peak_mib={max(res.get('rss_peak_kb', {0: 0}).values()) / 1024:.0f} "
              f"replay_redis_peak_mib={res.get('redis_used_memory_peak', 0) / 2**20:.1f}")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--day", default="2025-08-03", help="UTC day of the 2025-08 file (default 2025-08-03)")
    ap.add_argument("--hours", type=float, default=24.0, help="replay this many hours from 00:00 (default 24)")
    ap.add_argument("--compare", help="also replay at this speed (e.g. 60) and compare the trades")
    ap.add_argument("--check-jumps", action="store_true",
                    help="also replay at max with --every-point (no quiet jumps) and compare the trades")
    ap.add_argument("--gap", type=int, default=45, help="minutes between generated signals at least")
    ap.add_argument("--month", action="store_true",
                    help=f"the 30-day file ({MONTH.name}) from 2024-12-01, 28 days (overrides --day/--hours)")
    ap.add_argument("--days", type=float, default=28.0, help="with --month: how many days from 2024-12-01 (default 28)")
    args = ap.parse_args()
    if args.month:
        args.day, args.hours = "2024-12-01", args.days * 24.0
    bars, _ = load_bars(MONTH if args.month else MARKET)
    lo, first, hi = day_slice(bars, args.day, args.hours)
    with tempfile.TemporaryDirectory(prefix="bench-replay-") as tmp:
        agg, sig, lines = write_inputs(Path(tmp), bars, lo, first, hi, args.gap)
        print(f"input: {(MONTH if args.month else MARKET).name} {args.day} +{args.hours:g} h ({hi - first} bars after 400 of history), "
              f"{len(lines)} generated signal lines")
        fast = replay(agg, sig, "max", Path(tmp) / "fast", bars[first].ts)
        show("fastest", fast)
        if args.month:
            print(f"FIGURE replay_month_wall_sec={fast['replay']['wall_sec']:.1f} trades={fast['totals']['trades']} "
                  f"(target < 600 for 28 days; this run {args.days:g} days)")
        else:
            print(f"FIGURE replay_day_wall_sec={fast['replay']['wall_sec']:.1f} (target < 60 for 24 h)")
        ok = True
        if args.check_jumps:
            every = replay(agg, sig, "max", Path(tmp) / "every", bars[first].ts, ["--every-point"])
            show("every point", every)
            print(f"FIGURE quiet_jumps_sec={fast['replay']['wall_sec']:.1f} every_point_sec="
                  f"{every['replay']['wall_sec']:.1f} ratio={every['replay']['wall_sec'] / fast['replay']['wall_sec']:.1f}")
            ok = same_run(fast, every, "max", "every point") and ok
        if args.compare:
            slow = replay(agg, sig, args.compare, Path(tmp) / "slow", bars[first].ts)
            show(f"{args.compare}x", slow)
            ok = same_run(fast, slow, "max", f"{args.compare}x") and ok
        return 0 if ok else 1


def same_run(a: dict, b: dict, la: str, lb: str) -> bool:
    """Print whether two replays of the same input gave the same trades and signal outcomes (and where not)."""
    same = trades_of(a) == trades_of(b)
    outcomes = [(s["n"], s["outcome"], s["trade_key"]) for s in a["signals"]] == \
               [(s["n"], s["outcome"], s["trade_key"]) for s in b["signals"]]
    print(f"FIGURE identical_trades={same} identical_signal_outcomes={outcomes} ({la} vs {lb})")
    for x, y in zip(trades_of(a), trades_of(b)):
        if x != y:
            print(f"  differs: {la} {x}\n           {lb} {y}")
    return same and outcomes


if __name__ == "__main__":
    sys.exit(main())
