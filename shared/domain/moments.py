"""The moment finder: a moment in the market data where a long (or a short) runs through TP1, TP2 and a trailing
exit quickly. Used by the demo, the chaos planner, the benchmarks and the tests, so it lives in the core below them.

It simulates the product's own plan (shared/domain/exit_plan.py, on the feed's prices) on the bars, so any file in
the aggregated.csv format works, real or synthetic. Pure: bars and settings in, a moment out.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Sequence

import msgspec

from shared.config import Config
from shared.domain.bars import Bar
from shared.domain.exit_plan import EntryPlan, PlanError, build_plan
from shared.domain.swings import window_extreme
from shared.domain.symbol import SymbolFilters


class Moment(msgspec.Struct, frozen=True):
    """The signal bar's index, and how many bars until TP2 and until the trailing exit is likely."""
    index: int
    bars_to_tp2: int
    bars_after_tp2: int


def plan_at(bars: Sequence[Bar], i: int, cfg: Config, f: SymbolFilters, side: str = "long") -> EntryPlan | None:
    """The product's plan for a `side` signal at bar `i`'s close (stop: the farther of SL_PCT's and the swing of the
    SWING_MINS + 1 bars ending at it, in the feed's prices); None when the plan is invalid there."""
    extreme = window_extreme(bars[max(0, i - cfg.SWING_MINS):i + 1], side)
    try:
        return build_plan(side, bars[i].close, f, offset=cfg.ENTRY_OFFSET_USD, qty_usd=cfg.QTY_USD,
                          sl_pct=cfg.SL_PCT, r_list=cfg.TP_R_LIST, swing_extreme=extreme,
                          gap_ticks=cfg.SL_LIMIT_GAP_TICKS)
    except PlanError:
        return None


def bars_to_tp2(bars: Sequence[Bar], i: int, plan: EntryPlan, horizon: int, side: str = "long") -> int | None:
    """Bars after `i` until the plan's TP2 trades, None when its stop trades first or neither within `horizon`."""
    sign = 1 if side == "long" else -1
    for j in range(i + 1, min(len(bars), i + horizon)):
        adverse, favourable = (bars[j].low, bars[j].high) if side == "long" else (bars[j].high, bars[j].low)
        if sign * (adverse - plan.sl) <= 0:
            return None
        if sign * (favourable - plan.tp2) >= 0:
            return j - i
    return None


def _reversal_after(bars: Sequence[Bar], j: int, amount: Decimal, horizon: int, side: str) -> int | None:
    """Bars after `j` until the price has come back `amount` from its best (a drop from the peak for a long, a
    rise from the trough for a short): far enough for the trailing stop to move and be hit."""
    best = bars[j].high if side == "long" else bars[j].low
    for k in range(j + 1, min(len(bars), j + horizon)):
        if side == "long":
            best = max(best, bars[k].high)
            back = best - bars[k].low
        else:
            best = min(best, bars[k].low)
            back = bars[k].high - best
        if back >= amount:
            return k - j
    return None


def find_moment(bars: Sequence[Bar], cfg: Config, f: SymbolFilters, min_history: int = 400,
                min_bars_to_tp2: int = 20, min_bars_after: int = 8, side: str = "long") -> Moment:
    """The quickest complete trade of `side` in the data that still shows each stage on its own bars;
    raises LookupError when there is none."""
    best: Moment | None = None
    for i in range(max(min_history, cfg.SWING_MINS), len(bars) - 10):
        plan = plan_at(bars, i, cfg, f, side)
        if plan is None:
            continue
        to_tp2 = bars_to_tp2(bars, i, plan, 180, side)
        if to_tp2 is None or to_tp2 < min_bars_to_tp2:
            continue
        after = _reversal_after(bars, i + to_tp2, plan.r / 2 + cfg.TRAIL_SWING_BUFFER_USD * 2, 120, side)
        if after is None or after < min_bars_after:
            continue
        m = Moment(index=i, bars_to_tp2=to_tp2, bars_after_tp2=after)
        if best is None or to_tp2 + after < best.bars_to_tp2 + best.bars_after_tp2:
            best = m
    if best is None:
        raise LookupError(f"no moment in the market data where a {side} reaches TP2")
    return best
