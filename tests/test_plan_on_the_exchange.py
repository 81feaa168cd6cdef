"""The original's plan decisions made by the real position engine (and exit manager) on the paper exchange with a
USDT/USDC basis: k read from the two book tickers, the swing window anchored at the signal's minute of the live
feed, the farther stop, the fee check (event, alert, optional skip), and the trailing stop re-priced by k."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
import requests

from shared.adapters.agg_feed import read_last_bars
from shared.domain.exit_plan import build_plan, round_trip_fees
from shared.domain.risk_math import round_nearest_to_step
from shared.domain.swings import signal_window, window_extreme
from shared.domain.symbol import SymbolFilters, basis_k
from tests.test_exit_manager_support import events, legs_placed, start_stack, wait_closed
from tests.test_position_engine_support import make_stack_fixture  # noqa: F401  (fixture make_stack)

T = Decimal("0.01")
F = SymbolFilters("BTCUSDC", "BTC", "USDC", T, Decimal("0.00001"), Decimal("0.00001"), Decimal(9000), Decimal(5))


def _book(s, symbol: str) -> tuple[Decimal, Decimal]:
    body = requests.get(f"http://127.0.0.1:{s.paper_port}/api/v3/ticker/bookTicker", params={"symbol": symbol},
                        timeout=5).json()
    return Decimal(body["bidPrice"]), Decimal(body["askPrice"])


def _expected(s, side: str, price: Decimal, ts: float, k: Decimal):
    bars = read_last_bars(s.env["AGG_CSV"], 10_000).bars
    ext = window_extreme(signal_window(bars, ts, 180), side)
    return build_plan(side, price, F, offset=Decimal("0.5"), qty_usd=Decimal(100), sl_pct=Decimal("0.002"),
                      r_list=(Decimal(1), Decimal(2)), swing_extreme=ext, k=k), ext


def test_plan_is_repriced_by_the_books_ratio_and_anchored_at_the_signal_minute(make_stack):
    s = make_stack(PAPER_BASIS_BPS="-3").up()
    feed_bid, feed_ask = _book(s, "BTCUSDT")
    k = basis_k(_book(s, "BTCUSDC"), (feed_bid, feed_ask))
    assert k != 1
    bars = read_last_bars(s.env["AGG_CSV"], 10_000).bars
    now = s.market_ts()
    # A signal a few minutes old whose window differs from the newest 181 rows: the anchor is what decides.
    ago = next(m for m in range(2, 10) if window_extreme(signal_window(bars, now - 60 * m, 180), "long")
               != window_extreme(bars[-181:], "long"))
    ts = float(now - 60 * ago)
    price = bars[-1 - ago].close
    key = s.signal("long", price, ts=ts)
    ev = s.wait_event("entry_planned", signal_key=key)
    want, ext = _expected(s, "long", price, ts, k)
    d = ev.data
    assert Decimal(str(d["k"])) == k
    assert (Decimal(str(d["entry"])), Decimal(str(d["sl"])), Decimal(str(d["tp1"])), Decimal(str(d["tp2"]))) == \
        (want.entry_price, want.sl, want.tp1, want.tp2)
    assert Decimal(str(d["feed_sl"])) == want.feed_sl and d["sl_source"] == want.sl_source
    assert want.feed_sl <= min(ext, want.feed_entry * (1 - Decimal("0.002")))   # the farther of the two
    pos = s.state().position
    assert pos.k_entry == k and pos.entry_price == want.entry_price
    (o,) = s.entry_orders()
    assert Decimal(o["price"]) == want.entry_price and Decimal(o["origQty"]) == want.qty


@pytest.mark.parametrize("skip", [False, True])
def test_a_plan_whose_tp1_does_not_pay_the_fees_is_reported_and_skipped_only_when_asked(make_stack, skip):
    s = make_stack(PAPER_FEE_RATE="0.05", SKIP_TP1_BELOW_FEES=str(skip).lower()).up()
    key = s.signal("long", s.last())
    ev = s.wait_event("plan_below_fees", signal_key=key)
    gain, fees = Decimal(str(ev.data["tp1_gain"])), Decimal(str(ev.data["round_trip_fees"]))
    assert gain < fees and Decimal(str(ev.data["fee_rate"])) == Decimal("0.05") and ev.data["fee_source"] == "account"
    s.wait_notified("plan_below_fees")
    if skip:
        assert "tp1_below_fees" in s.wait_event("signal_aborted", signal_key=key).data["reason"]
        assert s.entry_orders() == [] and s.status() is None
    else:
        s.wait_event("entry_planned", signal_key=key)
        s.wait(lambda: len(s.entry_orders()) == 1, 10, "entry order sent")


def test_no_fee_event_when_tp1_pays_the_round_trip(make_stack):
    s = make_stack(PAPER_FEE_RATE="0").up()
    key = s.signal("long", s.last())
    ev = s.wait_event("entry_planned", signal_key=key)
    gain, fees = round_trip_fees(Decimal(str(ev.data["entry"])), Decimal(str(ev.data["tp1"])),
                                 Decimal(str(ev.data["qty"])), Decimal(0))
    assert gain > fees == 0
    assert s.event_for("plan_below_fees") is None


def test_trailing_stop_is_the_feed_swing_repriced_by_k(tmp_path: Path, redis_url, market_file, market_bars, moment):
    s = start_stack(tmp_path, redis_url, market_file, market_bars[moment.index + 1].ts, PAPER_BASIS_BPS="-4")
    try:
        s.append_peak("long", _book(s, "BTCUSDT")[1])   # DeltaScout's price is the feed's (USDT)
        s.wait(lambda: legs_placed(s), 20, "three legs resting")
        pos = s.state().position
        assert pos.k_entry < 1
        s.admin("/speed", {"speed": 600})
        wait_closed(s, timeout=120)
        evals = [e for e in events(s, "trail_eval", pos.trade_key) if e.data.get("candidate") is not None
                 and e.data.get("source") == "swing"]
        assert evals, "no trailing candidate was evaluated"
        lows = {b.low for b in market_bars[moment.index - 300:moment.index + moment.bars_to_tp2 + moment.bars_after_tp2 + 120]}
        for e in evals:
            cand = Decimal(str(e.data["candidate"]))
            # candidate = nearest((swing low - 15) x k): some real low lies within a tick of cand / k + 15
            swing = cand / pos.k_entry + Decimal(15)
            assert any(abs(lo - swing) <= T for lo in lows), f"{cand} is not a re-priced swing low"
            assert cand == round_nearest_to_step(cand, T)
    finally:
        s.stop_all()


def test_no_feed_skips_the_open_and_the_lock_stays_as_the_original_does(make_stack, tmp_path: Path):
    s = make_stack(AGG_CSV=str(tmp_path / "no-such-feed.csv"), LOCK_SEC="600").up()
    key = s.signal("long", s.last())
    assert "agg_unavailable" in s.wait_event("signal_aborted", signal_key=key).data["reason"]
    s.wait_notified("entry_aborted")
    assert s.entry_orders() == [] and s.status() is None
    # §13: the lock was set before the plan, so the next signal within LOCK_SEC is skipped by it.
    assert s.ignored(s.signal("long", s.last())).startswith("lock")


def test_unreadable_feed_rows_are_said_by_the_engine(make_stack, tmp_path: Path):
    feed = tmp_path / "engine_feed.csv"
    s = make_stack(AGG_CSV=str(feed)).up()
    s.wait(lambda: Path(s.env["PAPER_FEED_CSV"]).exists(), 10, "the exchange's feed")
    rows = Path(s.env["PAPER_FEED_CSV"]).read_text().splitlines()
    bad = rows[-1].split(",")
    bad[7] = "n/a"   # text in ClosePrice
    feed.write_text("\n".join(rows + [",".join(bad)]) + "\n")
    ev = s.wait_event("swing_feed_bad_rows")
    assert ev.data["bad_rows"] == 1 and ev.data["action"] == "rows skipped"
    s.wait_notified("swing_feed_bad_rows")
