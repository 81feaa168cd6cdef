"""Pick a moment in the market data where a demo long runs through TP1, TP2 and a trailing exit quickly.

It simulates the product's own plan (swing stop over SWING_MINS, TP_R_LIST) on the bars, so any file in the
aggregated.csv format works, real or synthetic.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Sequence

import msgspec

from shared.config import Config
from shared.domain.bars import Bar
from shared.domain.exit_plan import PlanError, build_plan
from shared.domain.symbol import SymbolFilters


class Moment(msgspec.Struct, frozen=True):
    """The signal bar's index, and how many bars until TP2 and until the trailing exit is likely."""
    index: int
    bars_to_tp2: int
    bars_after_tp2: int


def _run(bars: Sequence[Bar], i: int, sl: Decimal, tp2: Decimal, horizon: int) -> int | None:
    for j in range(i + 1, min(len(bars), i + horizon)):
        if bars[j].low <= sl:
            return None
        if bars[j].high >= tp2:
            return j - i
    return None


def _drop_after(bars: Sequence[Bar], j: int, amount: Decimal, horizon: int) -> int | None:
    peak = bars[j].high
    for k in range(j + 1, min(len(bars), j + horizon)):
        peak = max(peak, bars[k].high)
        if peak - bars[k].low >= amount:
            return k - j
    return None


def find_moment(bars: Sequence[Bar], cfg: Config, f: SymbolFilters, min_history: int = 400,
                min_bars_to_tp2: int = 20, min_bars_after: int = 8) -> Moment:
    """The quickest complete long trade in the data that still shows each stage on its own bars;
    raises LookupError when there is none."""
    best: Moment | None = None
    for i in range(max(min_history, cfg.SWING_MINS), len(bars) - 10):
        window = bars[i - cfg.SWING_MINS + 1:i + 1]
        try:
            plan = build_plan("long", bars[i].close, f, offset=cfg.ENTRY_OFFSET_USD, qty_usd=cfg.QTY_USD,
                              sl_pct=cfg.SL_PCT, r_list=cfg.TP_R_LIST, swing_extreme=min(b.low for b in window))
        except PlanError:
            continue
        to_tp2 = _run(bars, i, plan.sl, plan.tp2, 180)
        if to_tp2 is None or to_tp2 < min_bars_to_tp2:
            continue
        after = _drop_after(bars, i + to_tp2, plan.r / 2 + cfg.TRAIL_SWING_BUFFER_USD * 2, 120)
        if after is None or after < min_bars_after:
            continue
        m = Moment(index=i, bars_to_tp2=to_tp2, bars_after_tp2=after)
        if best is None or to_tp2 + after < best.bars_to_tp2 + best.bars_after_tp2:
            best = m
    if best is None:
        raise LookupError("no moment in the market data where a long reaches TP2")
    return best
