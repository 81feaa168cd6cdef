"""Unit tests of the pure core: rounding, sizing, the exit plan (long and short), the leg split, swings."""
from __future__ import annotations

from decimal import Decimal as D

import pytest

from shared.domain.bars import BadHeader, BadRow, check_header, parse_row, parse_ts
from shared.domain.exit_plan import PlanError, build_plan, entry_price, size_qty, stop_limit_price
from shared.domain.exit_rules import trail_candidate, trail_move
from shared.domain.legs import split_qty_3legs
from shared.domain.order_ids import client_id, trade_key_for, trade_key_of
from shared.domain.risk_math import ceil_to_step, floor_to_step, fmt_step, round_nearest_to_step
from shared.domain.swings import last_swing_high, last_swing_low, swing_low_indices
from shared.domain.symbol import SymbolFilters

F = SymbolFilters("BTCUSDC", "BTC", "USDC", D("0.01"), D("0.00001"), D("0.00001"), D("9000"), D("5"))
R12 = (D(1), D(2))


def test_rounding_to_tick_and_step():
    assert floor_to_step(D("95000.019"), D("0.01")) == D("95000.01")
    assert ceil_to_step(D("95000.011"), D("0.01")) == D("95000.02")
    assert ceil_to_step(D("95000.01"), D("0.01")) == D("95000.01")
    assert round_nearest_to_step(D("0.000015"), D("0.00001")) == D("0.00002")
    assert floor_to_step(D("0.0010599"), D("0.00001")) == D("0.00105")
    assert fmt_step(D("95000.5"), D("0.01")) == "95000.50"
    assert fmt_step(D("0.00100"), D("0.00001000")) == "0.00100"
    with pytest.raises(ValueError):
        floor_to_step(D(1), D(0))


def test_entry_price_stays_marketable_by_at_least_a_tick():
    assert entry_price("long", D("95000.00"), D("0.5"), D("0.01")) == D("95000.50")
    assert entry_price("long", D("95000.004"), D("0"), D("0.01")) == D("95000.01")   # toward the close (§3)
    assert entry_price("short", D("95000.00"), D("0.5"), D("0.01")) == D("94999.50")
    assert entry_price("short", D("95000.00"), D("0"), D("0.01")) == D("94999.99")


def test_sizing_floors_to_step_and_checks_minimums():
    assert size_qty(D("100"), D("95000.50"), F) == D("0.00105")
    with pytest.raises(PlanError, match="min notional"):
        size_qty(D("4"), D("95000"), F)
    with pytest.raises(PlanError, match="min qty"):
        size_qty(D("0.5"), D("95000"), F)


def test_long_plan_uses_swing_low_and_r_multiples():
    p = build_plan("long", D("95000"), F, offset=D("0.5"), qty_usd=D("100"), sl_pct=D("0.002"), r_list=R12,
                   swing_extreme=D("94800.129"))
    assert (p.entry_price, p.sl, p.sl_source) == (D("95000.50"), D("94800.12"), "swing")
    assert p.r == D("200.38") and p.tp1 == D("95200.88") and p.tp2 == D("95401.26")
    assert p.sl < p.entry_price < p.tp1 < p.tp2


def test_short_plan_falls_back_to_sl_pct_when_swing_is_on_the_wrong_side():
    p = build_plan("short", D("95000"), F, offset=D("0.5"), qty_usd=D("100"), sl_pct=D("0.002"), r_list=R12,
                   swing_extreme=D("94000"))
    assert p.sl_source == "pct" and p.sl == D("95189.50")
    assert p.tp2 < p.tp1 < p.entry_price < p.sl
    assert p.entry_price - p.tp1 == p.r and p.entry_price - p.tp2 == 2 * p.r


def test_invalid_plan_is_refused_with_a_reason():
    tiny = SymbolFilters("X", "B", "Q", D("1"), D("1"), D("1"), D("1000"), D("0"))
    with pytest.raises(PlanError, match="needs sl < entry < tp1 <= tp2"):
        build_plan("long", D("100"), tiny, offset=D("0"), qty_usd=D("1000"), sl_pct=D("0.001"),
                   r_list=(D("0.5"), D(1)), swing_extreme=None)  # TP1 rounds onto the entry


def test_stop_limit_sits_gap_ticks_beyond_the_stop():
    assert stop_limit_price("long", D("100.00"), 2, D("0.01")) == D("99.98")
    assert stop_limit_price("short", D("100.00"), 2, D("0.01")) == D("100.02")
    assert stop_limit_price("long", D("100.00"), 0, D("0.01")) == D("99.99")   # at least one tick (§8)


@pytest.mark.parametrize("qty,expected", [
    (D("0.00105"), (D("0.00035"), D("0.00035"), D("0.00035"))),
    (D("0.00089"), (D("0.00029"), D("0.00029"), D("0.00031"))),     # remainder to the trailing leg
    (D("0.000899"), (D("0.00029"), D("0.00029"), D("0.00031"))),    # dust below the step is in no leg
    (D("0.00012"), (D("0.00006"), D("0.00006"), D("0"))),           # a third below min notional: 50/50/0
    (D("0.00006"), (D("0.00006"), D("0"), D("0"))),                 # a half below min notional: all in one
])
def test_leg_split_in_whole_steps(qty, expected):
    legs = split_qty_3legs(qty, D("0.00001"), D("0.00001"), D("5"), D("95000"))
    assert legs == expected
    assert sum(legs) == floor_to_step(qty, D("0.00001"))


def test_swing_fractal_on_real_rows(market_bars):
    bars = market_bars[1000:1240]
    lows = [b.low for b in bars]
    idx = swing_low_indices(lows, 2)
    assert idx, "no swing low in 240 real minutes"
    for i in idx:
        assert all(lows[i] < lows[j] for j in (i - 2, i - 1, i + 1, i + 2))
    # Not a swing: every other bar with full neighbourhoods has a neighbour at or below it.
    for i in set(range(2, len(lows) - 2)) - set(idx):
        assert any(lows[i] >= lows[j] for j in (i - 2, i - 1, i + 1, i + 2))
    assert last_swing_low(lows, 2) == lows[idx[-1]]
    assert last_swing_high([b.high for b in bars], 2) is not None


def test_swing_needs_lr_bars_on_each_side():
    lows = [D(x) for x in (5, 4, 3, 4, 5)]
    assert last_swing_low(lows, 2) == D(3)
    assert last_swing_low(lows[:4], 2) is None


def test_trailing_moves_only_in_favour_and_by_the_step():
    kw = dict(step_usd=D("20"), last_close=D("1100"), confirm_buffer=D("0"), market=D("1100"))
    assert trail_move("long", D("1000"), D("1030"), **kw) == D("1030")
    assert trail_move("long", D("1000"), D("1010"), **kw) is None        # less than TRAIL_STEP_USD
    assert trail_move("long", D("1000"), D("990"), **kw) is None         # against the position
    assert trail_move("long", D("1000"), D("1100"), **kw) is None        # at the market: would trigger
    assert trail_move("short", D("1200"), D("1150"), **{**kw, "market": D("1100")}) == D("1150")
    assert trail_move("long", D("1000"), D("1030"), **{**kw, "confirm_buffer": D("100")}) is None


def test_trail_candidate_is_swing_minus_buffer(market_bars):
    bars = market_bars[2000:2240]
    c = trail_candidate("long", bars, 2, D("15"), D("0.01"))
    assert c == last_swing_low([b.low for b in bars], 2) - D("15")


def test_client_ids_are_deterministic_and_valid():
    tk = trade_key_for("PEAK|2025-01-13T20:00|long|95000.0", 1736798412, "long")
    assert tk == trade_key_for("PEAK|2025-01-13T20:00|long|95000.0", 1736798412, "long")
    cid = client_id(tk, "tp2_list", 12)
    assert len(cid) <= 36 and trade_key_of(cid) == tk
    assert trade_key_of("web_8f3a9c") is None


def test_aggregated_csv_header_and_rows():
    check_header("Timestamp,Trades,TotalQty,AvgSize,BuyQty,SellQty,AvgPrice,ClosePrice,HiPrice,LowPrice\n")
    with pytest.raises(BadHeader):
        check_header("Timestamp,Close\n")
    bar = parse_row("2025-01-13T20:00:00Z,10,1.5,0.15,1,0.5,95000,95010.5,95020,94990")
    assert bar.close == D("95010.5") and bar.ts == parse_ts("1736798400")
    with pytest.raises(BadRow):
        parse_row("2025-01-13T20:00:00Z,10,1.5,0.15,1,0.5,95000,95010.5,94000,94990")
    with pytest.raises(BadRow):
        parse_row("garbage")
