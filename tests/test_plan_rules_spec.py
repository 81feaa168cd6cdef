"""The original's plan rules (../shared/reference/original-plan-rules.md), decision for decision: a table of the
spec's worked examples per section, and a property test of each rule. Pure functions, no I/O."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.bars import Bar
from shared.domain.exit_plan import (
    FeedPlan,
    PlanError,
    build_plan,
    check_order,
    entry_price,
    feed_plan,
    reprice,
    size_qty,
    stop_limit_price,
    stop_loss,
    take_profits,
)
from shared.domain.exit_rules import be_due, be_price, trail_candidate, trail_fallback, trail_move
from shared.domain.legs import leg_floor_prices, split_qty_3legs
from shared.domain.position import Leg, Position
from shared.domain.risk_math import floor_to_step, is_multiple
from shared.domain.swings import signal_window, window_extreme
from shared.domain.symbol import SymbolFilters, basis_k

T, S = D("0.01"), D("0.00001")
F = SymbolFilters("BTCUSDC", "BTC", "USDC", T, S, S, D("9000"), D("5"))
F0 = SymbolFilters("BTCUSDC", "BTC", "USDC", T, S, S, D("9000"), D("0"))   # no minimum notional
R12 = (D(1), D(2))
K = basis_k((D("94990.50"), D("94990.50")), (D("95000.00"), D("95000.00")))   # §5: 0.9999


def _ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).replace(tzinfo=timezone.utc).timestamp()


def _bar(ts: float, low: D, high: D | None = None) -> Bar:
    high = high if high is not None else low + 10
    return Bar(ts=int(ts), trades=1, total_qty=D(1), buy_qty=D(1), sell_qty=D(0), avg_price=low, close=low,
               high=high, low=low)


# ---- §1 stop: the farther of SL_PCT's stop and the swing ----------------------------------------------------

@pytest.mark.parametrize("side,entry,extreme,sl,src", [
    ("long", D("95000.50"), D("94723.40"), D("94723.40"), "swing"),
    ("long", D("95000.50"), D("94900.00"), D("94810.49"), "pct"),      # swing nearer than SL_PCT: SL_PCT's
    ("long", D("95000.50"), D("95001.00"), D("94810.49"), "pct"),      # every low above the entry
    ("long", D("95000.50"), None, D("94810.49"), "pct"),               # no feed
    ("short", D("94999.50"), D("95150.00"), D("95189.50"), "pct"),
    ("short", D("94999.50"), D("95310.25"), D("95310.25"), "swing"),
])
def test_stop_is_the_farther_of_pct_and_swing(side, entry, extreme, sl, src):
    assert stop_loss(side, entry, extreme, D("0.002"), T) == (sl, src)


def test_stop_is_clamped_one_tick_beyond_the_entry():
    assert stop_loss("long", D("100.00"), D("100.50"), D("0.00001"), T) == (D("99.99"), "tick")
    assert stop_loss("short", D("100.00"), D("99.50"), D("0.00001"), T) == (D("100.01"), "tick")


@settings(max_examples=300, deadline=None)
@given(st.integers(1_000_000, 20_000_000), st.integers(-200_000, 200_000), st.integers(1, 500),
       st.sampled_from(["long", "short"]))
def test_stop_property(e_ticks, swing_off, pct_bp, side):
    entry, swing, pct = D(e_ticks) * T, D(e_ticks + swing_off) * T / 1, D(pct_bp) / 10000
    sl, _ = stop_loss(side, entry, swing, pct, T)
    assert is_multiple(sl, T)
    if side == "long":
        assert sl == floor_to_step(min(entry * (1 - pct), swing, entry - T), T)
        assert sl <= entry - T
    else:
        assert -sl == floor_to_step(-max(entry * (1 + pct), swing, entry + T), T)
        assert sl >= entry + T


# ---- §2 the window: SWING_MINS + 1 rows anchored at the signal's minute --------------------------------------

def test_window_is_181_rows_ending_at_the_signal_bar():
    t0 = _ts("2025-01-13T17:00:00Z")
    bars = [_bar(t0 + 60 * i, D(1000 + i)) for i in range(191)]   # 17:00 .. 20:10
    w = signal_window(bars, _ts("2025-01-13T20:05:10Z"), 180)
    assert len(w) == 181
    assert (w[0].ts, w[-1].ts) == (_ts("2025-01-13T17:05:00Z"), _ts("2025-01-13T20:05:00Z"))
    behind = [b for b in bars if b.ts <= _ts("2025-01-13T20:03:00Z")]   # the feed is behind the signal
    w = signal_window(behind, _ts("2025-01-13T20:05:10Z"), 180)
    assert len(w) == 181 and w[-1].ts == _ts("2025-01-13T20:03:00Z")


def test_window_counts_rows_not_minutes_and_excludes_newer_bars():
    t0 = _ts("2025-01-13T17:00:00Z")
    bars = [_bar(t0 + 120 * i, D(1000 - i)) for i in range(150)]   # a bar every other minute
    sig = bars[100].ts + 30
    w = signal_window(bars, sig, 180)
    assert len(w) == 101 and w[-1] is bars[100]     # all the rows before it: fewer than 181 in the file
    assert window_extreme(w, "long") == bars[100].low   # the falling series' low is the signal bar's, not later ones
    assert window_extreme(w, "short") == bars[0].high
    assert signal_window([], sig, 180) == [] and window_extreme([], "long") is None


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 400), st.integers(0, 399), st.integers(0, 200))
def test_window_property(n, at, swing_mins):
    bars = [_bar(60 * i, D(i + 1)) for i in range(n)]
    i = min(at, n - 1)
    w = signal_window(bars, 60 * at + 59, swing_mins)
    assert w[-1] is bars[i] and len(w) == min(swing_mins + 1, i + 1)
    assert all(b.ts <= bars[i].ts for b in w)


# ---- §3 entry, toward the close -------------------------------------------------------------------------------

@pytest.mark.parametrize("side,close,offset,entry", [
    ("long", D("95000.00"), D("0.5"), D("95000.50")),
    ("short", D("95000.00"), D("0.5"), D("94999.50")),
    ("long", D("95000.13"), D("0.5"), D("95000.63")),
    ("long", D("95000.00"), D("0"), D("95000.01")),
    ("short", D("95000.00"), D("0"), D("94999.99")),
    ("long", D("95000.137"), D("0.5"), D("95000.63")),    # floored toward the close
    ("short", D("95000.137"), D("0.5"), D("94999.64")),   # ceiled toward the close
])
def test_entry_examples(side, close, offset, entry):
    assert entry_price(side, close, offset, T) == entry


@settings(max_examples=300, deadline=None)
@given(st.integers(1_000_000, 200_000_000), st.integers(0, 200), st.sampled_from(["long", "short"]))
def test_entry_property(close_milli, offset_cents, side):
    close, offset = D(close_milli) / 1000, D(offset_cents) / 100
    e = entry_price(side, close, offset, T)
    assert is_multiple(e, T)
    beyond = max(offset, T)
    if side == "long":
        assert close < e <= close + beyond and close + beyond - e < T
    else:
        assert close - beyond <= e < close and e - (close - beyond) < T


# ---- §4 TPs and the plan's validation --------------------------------------------------------------------------

def test_tp_examples_and_the_originals_tick_short_tp2():
    assert take_profits("long", D("95000.50"), D("277.10"), R12, T) == (D("95277.60"), D("95554.70"))
    # The original's doubles give 95601.45; the exact value is 95601.46 (a listed difference).
    assert take_profits("long", D("95000.50"), D("300.48"), R12, T)[1] == D("95601.46")
    with pytest.raises(PlanError, match="tps_not_ready"):
        take_profits("long", D("95000.50"), D("300.48"), (D(1),), T)


def test_ordering_allows_tp1_equal_tp2_only():
    check_order("long", D(99), D(100), D(101), D(101), T)
    check_order("short", D(101), D(100), D(99), D(99), T)
    with pytest.raises(PlanError):
        check_order("long", D(99), D(100), D(102), D(101), T)
    with pytest.raises(PlanError):
        check_order("long", D(100), D(100), D(101), D(102), T)


def test_a_plan_whose_stop_order_is_below_min_notional_is_refused_before_the_entry():
    # §4b's example: QTY_USD 5.2 at 100,000.50 gives 0.00005 (5.000025 passes); its stop at 99,800.49 does not.
    with pytest.raises(PlanError, match="below the exchange's minimum"):
        build_plan("long", D("100000.00"), F, offset=D("0.5"), qty_usd=D("5.2"), sl_pct=D("0.002"), r_list=R12,
                   swing_extreme=None)


def test_legs_are_merged_when_a_third_is_below_min_notional():
    # §7's defect: 0.00012 at 94,990.99 splits 4/4/4 units of ~3.8 USDC; here 6/6/0 (each >= 5 at the stop's limit).
    p = build_plan("long", D("95000.00"), F, offset=D("0.5"), qty_usd=D("12"), sl_pct=D("0.002"), r_list=R12,
                   swing_extreme=D("94723.40"), k=K)
    assert p.qty == D("0.00012")
    floors = leg_floor_prices(p.tp1, p.tp2, stop_limit_price("long", p.sl, 2, T))
    assert split_qty_3legs(p.qty, S, S, D(5), floors) == (D("0.00006"), D("0.00006"), D("0"))


@pytest.mark.parametrize("units,legs", [
    (105, (35, 35, 35)), (106, (35, 35, 36)), (4, (1, 1, 2)), (2, (1, 1, 0)),
    (1, (1, 0, 0)),   # the original raises; one full leg here (a listed difference)
])
def test_leg_split_examples(units, legs):
    assert split_qty_3legs(S * units, S, S, D(0), D("95000")) == tuple(S * u for u in legs)


# ---- §5 the USDT -> USDC re-pricing ----------------------------------------------------------------------------

def test_repricing_example_long_and_short():
    assert K == D("0.9999")
    p = build_plan("long", D("95000.00"), F, offset=D("0.5"), qty_usd=D("100"), sl_pct=D("0.002"), r_list=R12,
                   swing_extreme=D("94723.40"), k=K)
    assert (p.feed_entry, p.feed_sl, p.feed_tp1, p.feed_tp2) == (D("95000.50"), D("94723.40"), D("95277.60"),
                                                                  D("95554.70"))
    assert (p.entry_price, p.sl, p.tp1, p.tp2) == (D("94990.99"), D("94713.92"), D("95268.07"), D("95545.14"))
    assert p.qty == D("0.00105") and p.k == K and p.sl_source == "swing"
    s = build_plan("short", D("95000.00"), F, offset=D("0.5"), qty_usd=D("100"), sl_pct=D("0.002"), r_list=R12,
                   swing_extreme=D("95310.25"), k=K)
    assert (s.entry_price, s.sl, s.tp1, s.tp2) == (D("94990.01"), D("95300.72"), D("94679.29"), D("94368.57"))


def test_repricing_keeps_the_entry_a_tick_beyond_the_repriced_close():
    fp = FeedPlan(D("100.01"), D("99.00"), D("101.00"), D("102.00"), "pct")
    # 100.01 x 0.5 = 50.005 floors to 50.00, below 100 x 0.5 + 0.01: the guard lifts it to 50.01.
    assert reprice("long", fp, D("100.00"), D("0.5"), T).entry == D("50.01")
    sp = FeedPlan(D("99.99"), D("101.00"), D("99.00"), D("98.00"), "pct")
    assert reprice("short", sp, D("100.00"), D("0.5"), T).entry == D("49.99")
    assert reprice("long", fp, D("100.00"), D(1), T) is fp


@settings(max_examples=300, deadline=None)
@given(st.integers(5_000_000, 15_000_000), st.integers(9900, 10100), st.sampled_from(["long", "short"]),
       st.integers(-30_000, 30_000))
def test_repricing_property(close_cents, k_bp, side, swing_off):
    close, k = D(close_cents) * T, D(k_bp) / 10000
    fp = feed_plan(side, close, close + D(swing_off) * T, offset=D("0.5"), sl_pct=D("0.002"), r_list=R12, tick=T)
    sp = reprice(side, fp, close, k, T)
    for a, b in ((sp.sl, fp.sl), (sp.tp1, fp.tp1), (sp.tp2, fp.tp2)):
        assert is_multiple(a, T) and abs(a - b * k) < T
        assert (a <= b * k) if side == "long" else (a >= b * k)
    assert (sp.entry > close * k) if side == "long" else (sp.entry < close * k)


# ---- §6 quantity, §8 stop limit -------------------------------------------------------------------------------

def test_quantity_examples():
    assert size_qty(D("100"), D("94990.99"), F) == D("0.00105")
    with pytest.raises(PlanError, match="min notional"):
        size_qty(D("5"), D("94990.99"), F)


@pytest.mark.parametrize("side,stop,gap,limit", [
    ("long", D("94713.92"), 2, D("94713.90")), ("long", D("94713.92"), 0, D("94713.91")),
    ("long", D("94713.92"), -3, D("94713.91")), ("short", D("95300.72"), 2, D("95300.74")),
    ("short", D("95300.72"), 0, D("95300.73")),
])
def test_stop_limit_examples(side, stop, gap, limit):
    assert stop_limit_price(side, stop, gap, T) == limit


# ---- §9 break-even after TP1 only -----------------------------------------------------------------------------

def _pos(**legs: str) -> Position:
    return Position(trade_key="t", signal_key="k", symbol="BTCUSDC", side="long", status="OPEN_FILLED",
                    entry_mode="LIMIT_THEN_MARKET", entry_price=D("94990.99"), qty=D("0.00105"), sl=D("94713.92"),
                    tp1=D("95268.07"), tp2=D("95545.14"), r=D("277.07"), signal_price=D("95000"), signal_ts=0,
                    created_at=0, entry_client_id="t-en-0", avg_entry=D("94985.40"),
                    legs=[Leg(name=n, qty=D("0.00035"), stop_price=D("94713.92"), stop_limit=D("94713.90"),
                              status="DONE" if why else "PLACED", exit_reason=why) for n, why in legs.items()])


def test_break_even_after_tp1_only():
    assert be_due(_pos(tp1="tp", tp2="", trail=""))
    assert not be_due(_pos(tp1="", tp2="tp", trail=""))     # TP2 first starts the trailing, not break-even
    assert not be_due(_pos(tp1="stop", tp2="", trail=""))
    assert be_price(_pos(), T) == D("94985.40")
    assert stop_limit_price("long", be_price(_pos(), T), 2, T) == D("94985.38")


# ---- §10 trailing: nearest tick, re-priced, ratchet, never through the book --------------------------------------

LOWS = [D(x) for x in ("95600", "95540", "95480", "95510", "95560", "95590")]
HIGHS = [D(x) for x in ("94400", "94460", "94520", "94490", "94440", "94410")]


def test_trailing_examples():
    bars = [_bar(60 * i, lo) for i, lo in enumerate(LOWS)]
    c = trail_candidate("long", bars, 2, D(15), T)
    assert c == D("95465.00")
    kw = dict(step_usd=D(20), last_close=D("95600"), confirm_buffer=D(0), market=D("95590"))
    assert trail_move("long", D("95440.00"), c, **kw) == D("95465.00")
    assert stop_limit_price("long", c, 2, T) == D("95464.98")
    assert trail_move("long", D("95450.00"), c, **kw) is None            # improves by 15 < 20
    # Through the market: the original cancels 95,400 and sends 95,465 above the bid of 95,430; kept here.
    through = bars + [_bar(60 * 6, D("95425"))]
    c2 = trail_candidate("long", through, 2, D(15), T)
    assert trail_move("long", D("95400.00"), c2, **{**kw, "market": D("95430")}) is None
    short = [_bar(60 * i, h - 10, h) for i, h in enumerate(HIGHS)]
    assert trail_candidate("short", short, 2, D(15), T) == D("94535.00")


def test_trailing_candidate_is_repriced_and_rounded_to_the_nearest_tick():
    bars = [_bar(60 * i, lo) for i, lo in enumerate(LOWS)]
    assert trail_candidate("long", bars, 2, D(15), T, K) == D("95455.45")    # 95,465 x 0.9999 = 95,455.4535
    short = [_bar(60 * i, h - 10, h) for i, h in enumerate(HIGHS)]
    assert trail_candidate("short", short, 2, D(15), T, K) == D("94525.55")   # 94,535 x 0.9999 = 94,525.5465
    assert trail_fallback("long", D("95000.00"), D("95000.02"), D(0), T) == D("94985.01")   # buffer 0 reads 15


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(9_000_000, 9_100_000), min_size=5, max_size=40), st.integers(9900, 10100),
       st.integers(0, 5000))
def test_trailing_candidate_property(lows_cents, k_bp, buf_cents):
    bars = [_bar(60 * i, D(x) * T) for i, x in enumerate(lows_cents)]
    k, buf = D(k_bp) / 10000, D(buf_cents) * T
    c = trail_candidate("long", bars, 2, buf, T, k)
    plain = trail_candidate("long", bars, 2, buf, T)
    if plain is None:
        assert c is None
        return
    assert is_multiple(c, T) and abs(c - plain * k) <= T / 2


# ---- the end-to-end default example ----------------------------------------------------------------------------

def test_end_to_end_default_example():
    t0 = _ts("2025-01-13T17:00:00Z")
    bars = [_bar(t0 + 60 * i, D("95100") if i != 50 else D("94723.40")) for i in range(200)]
    ext = window_extreme(signal_window(bars, _ts("2025-01-13T20:05:10Z"), 180), "long")
    assert ext == D("94723.40")
    p = build_plan("long", D("95000.00"), F, offset=D("0.5"), qty_usd=D("100"), sl_pct=D("0.002"), r_list=R12,
                   swing_extreme=ext, k=K)
    assert (p.feed_entry, p.feed_sl, p.feed_entry - p.feed_sl) == (D("95000.50"), D("94723.40"), D("277.10"))
    assert (p.entry_price, p.sl, p.tp1, p.tp2, p.qty) == (D("94990.99"), D("94713.92"), D("95268.07"), D("95545.14"),
                                                          D("0.00105"))
    floors = leg_floor_prices(p.tp1, p.tp2, stop_limit_price("long", p.sl, 2, T))
    assert split_qty_3legs(p.qty, S, S, D(5), floors) == (D("0.00035"),) * 3
    assert D("94713.92") * p.qty >= 5
