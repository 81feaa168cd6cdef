"""Replay equivalence: the same day of real bars with the same generated signals (as bench/bench_replay.py plays it)
through `executorctl replay` on two checkouts, then the paper exchange's orders compared one by one.

    .venv/bin/python bench/compare_replay_orders.py --base /work/main              # this checkout vs main
    .venv/bin/python bench/compare_replay_orders.py --base /work/main --hours 6    # a 6-hour slice
    .venv/bin/python bench/compare_replay_orders.py --base /work/main --month --day 2024-12-01 --hours 48

Each checkout is run with its own .venv. Orders are matched by their client id (deterministic: trade key, leg,
attempt) in market-time order and compared by what the exchange saw of each (side, type, quantities, prices,
status, what it executed, market times). The exchange's own numbers (order id, list id) are left out: a trade's
legs are first placed concurrently, so their requests reach the exchange in either order on any run, main's too.
Prints the differences and exits 1 when there are any; a trailing leg's larger quantity (the dust ledger's whole
steps it carries, README difference 26, issue 22) is counted apart as decided unless --strict.
"""
from __future__ import annotations

import argparse
from decimal import Decimal
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOME = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(HOME))

from bench.bench_replay import MARKET, MONTH, write_inputs  # noqa: E402
from shared.adapters.market_files import load_bars  # noqa: E402
from shared.domain.synthetic_signals import day_slice  # noqa: E402

FIELDS = ("client_order_id", "side", "type", "time_in_force", "orig_qty", "price", "stop_price", "executed_qty",
          "cum_quote", "status", "time", "update_time")


def run_replay(root: Path, agg: Path, sig: Path, start: int, run_dir: Path) -> tuple[dict, list[dict]]:
    """Replay on the checkout `root`; its JSON report and the exchange's orders in id order."""
    t0 = time.monotonic()
    res = subprocess.run([str(root / ".venv" / "bin" / "python"), "-m", "services.executorctl", "replay", "--agg",
                          str(agg), "--signals", str(sig), "--speed", "max", "--start", str(start), "--dir",
                          str(run_dir), "--timeout", "7200", "--json"],
                         cwd=root, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"replay on {root} failed ({res.returncode}):\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    doc = json.loads(res.stdout)
    state = json.loads((run_dir / "paper" / "paper.json").read_text())
    orders = sorted(state["engine"]["orders"].values(), key=lambda o: (o["time"], o["client_order_id"]))
    print(f"{root}: {len(orders)} orders, {len(doc['trades'])} trades, net {doc['totals']['net_pnl']}, "
          f"{time.monotonic() - t0:.0f} s")
    return doc, [{k: o.get(k) for k in FIELDS} for o in orders]


def dust_carry(x: dict | None, y: dict | None, keys: list[str]) -> bool:
    """A decided difference (README difference 26): the branch's trailing leg carries the dust ledger's whole
    steps, so only its quantities are larger; its prices, times and status are the base's."""
    if x is None or y is None or "-tr-" not in x["client_order_id"]:
        return False
    return set(keys) <= {"orig_qty", "executed_qty", "cum_quote"} and Decimal(y["orig_qty"]) > Decimal(x["orig_qty"])


def diff(a: list[dict], b: list[dict], explained: list[str]) -> list[str]:
    """Lines describing each order that differs (by position in market-time, client-id order); the ones a decided
    difference explains go to `explained`."""
    out = []
    for i in range(max(len(a), len(b))):
        x, y = (a[i] if i < len(a) else None), (b[i] if i < len(b) else None)
        if x != y:
            keys = [k for k in FIELDS if (x or {}).get(k) != (y or {}).get(k)]
            (explained if dust_carry(x, y, keys) else out).append(
                f"order #{i}: {keys}\n  base:   {x}\n  branch: {y}")
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base", default="/work/main", help="the other checkout (with its .venv)")
    ap.add_argument("--day", default="2025-08-03")
    ap.add_argument("--hours", type=float, default=24.0)
    ap.add_argument("--gap", type=int, default=45)
    ap.add_argument("--strict", action="store_true",
                    help="count the trailing legs' dust carry (README difference 26) as a difference too")
    ap.add_argument("--month", action="store_true", help=f"the 30-day file ({MONTH.name}); e.g. --day 2024-12-01")
    args = ap.parse_args()
    market = MONTH if args.month else MARKET
    bars, _ = load_bars(market)
    lo, first, hi = day_slice(bars, args.day, args.hours)
    with tempfile.TemporaryDirectory(prefix="compare-replay-") as tmp:
        agg, sig, lines = write_inputs(Path(tmp), bars, lo, first, hi, args.gap)
        print(f"input: {market.name} {args.day} +{args.hours:g} h, {len(lines)} signal lines")
        base_doc, base = run_replay(Path(args.base).resolve(), agg, sig, bars[first].ts, Path(tmp) / "base")
        mine_doc, mine = run_replay(HOME, agg, sig, bars[first].ts, Path(tmp) / "branch")
    explained: list[str] = []
    problems = diff(base, mine, explained) if not args.strict else diff(base, mine, [])
    trades_same = [t["trade_key"] for t in base_doc["trades"]] == [t["trade_key"] for t in mine_doc["trades"]]
    for line in problems:
        print(line)
    print(f"FIGURE orders_base={len(base)} orders_branch={len(mine)} orders_differing={len(problems)} "
          f"dust_carry_differences={len(explained)} "
          f"same_trade_keys={trades_same} net_base={base_doc['totals']['net_pnl']} "
          f"net_branch={mine_doc['totals']['net_pnl']}")
    return 0 if not problems and trades_same else 1


if __name__ == "__main__":
    sys.exit(main())
