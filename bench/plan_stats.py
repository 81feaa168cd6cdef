"""The plans the default settings make on market data, under the original's stop rule (the farther of SL_PCT's stop
and the window's swing) and under the rule the product had before (the swing whenever it is a tick beyond the
entry): how often the stop is the swing, R, and how many plans' TP1 does not pay the round trip's commission.

    .venv/bin/python bench/plan_stats.py [--every 15] [--fee-rate 0.001] [FILE ...]

Pure computation over the files (default: every file in ../shared/data/market, else the synthetic series); it
says which data it ran on.
"""
from __future__ import annotations

import argparse
import statistics
from decimal import Decimal
from pathlib import Path

from shared.adapters.market_files import find_market_file, load_bars
from shared.config import load_config, symbol_filters
from shared.domain.exit_plan import PlanError, build_plan, round_trip_fees
from shared.domain.risk_math import ceil_to_step, floor_to_step
from shared.domain.swings import window_extreme

HOME = Path(__file__).resolve().parents[1]


def _old_stop(side: str, entry: Decimal, ext: Decimal, sl_pct: Decimal, tick: Decimal) -> Decimal:
    """The rule before issue 13: the swing when it lies a tick beyond the entry, else SL_PCT's stop."""
    if side == "long":
        s = floor_to_step(ext, tick)
        return s if s <= entry - tick else floor_to_step(entry * (1 - sl_pct), tick)
    s = ceil_to_step(ext, tick)
    return s if s >= entry + tick else ceil_to_step(entry * (1 + sl_pct), tick)


def stats(path: Path, label: str, every: int, fee_rate: Decimal) -> None:
    cfg = load_config({})
    f = symbol_filters(cfg)
    bars, _bad = load_bars(path)
    rs: dict[str, list[Decimal]] = {"new": [], "old": []}
    swing = below_fees_new = below_fees_old = nearer = n = 0
    for i in range(cfg.SWING_MINS, len(bars), every):
        for side in ("long", "short"):
            ext = window_extreme(bars[i - cfg.SWING_MINS:i + 1], side)
            try:
                p = build_plan(side, bars[i].close, f, offset=cfg.ENTRY_OFFSET_USD, qty_usd=cfg.QTY_USD,
                               sl_pct=cfg.SL_PCT, r_list=cfg.TP_R_LIST, swing_extreme=ext)
            except PlanError:
                continue
            n += 1
            swing += p.sl_source == "swing"
            old_r = abs(p.entry_price - _old_stop(side, p.entry_price, ext, cfg.SL_PCT, cfg.TICK_SIZE))
            rs["new"].append(p.r)
            rs["old"].append(old_r)
            nearer += old_r < p.r
            gain, fees = round_trip_fees(p.entry_price, p.tp1, p.qty, fee_rate)
            below_fees_new += gain < fees
            old_gain = old_r * p.qty
            below_fees_old += old_gain < fee_rate * (2 * p.entry_price + old_r) * p.qty
    print(f"data: {path.name} [{label}], {len(bars)} bars, a long and a short plan every {every} bars: {n} plans")
    for name in ("old", "new"):
        v = rs[name]
        print(f"  {name:>3} stop rule: R min {min(v)}  p10 {sorted(v)[len(v) // 10]}  median {statistics.median(v)}")
    print(f"  new rule: stop is the swing in {100 * swing / n:.1f} % of plans, SL_PCT's in {100 * (n - swing) / n:.1f} %")
    print(f"  old rule gave a NEARER stop than the original in {100 * nearer / n:.1f} % of plans")
    print(f"  TP1 gain below the round trip's commission at {fee_rate}: old rule {100 * below_fees_old / n:.1f} %,"
          f" new rule {100 * below_fees_new / n:.1f} %")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("files", nargs="*", type=Path)
    ap.add_argument("--every", type=int, default=15)
    ap.add_argument("--fee-rate", type=Decimal, default=Decimal("0.001"))
    a = ap.parse_args()
    if a.files:
        todo = [(p, "given") for p in a.files]
    else:
        real = sorted((HOME.parent / "shared" / "data" / "market").glob("*.aggregated.csv"))
        todo = [(p, "REAL Binance minute bars") for p in real] or [find_market_file(HOME / "missing", HOME / "var" / "market")]
    for path, label in todo:
        stats(path, label, a.every, a.fee_rate)


if __name__ == "__main__":
    main()
