"""The entry itself: ENTRY_MODE (LIMIT_ONLY, LIMIT_THEN_MARKET, MARKET_ONLY), LIVE_ENTRY_TIMEOUT_SEC in market
time, Plan B both ways, a partial fill carried into the position, an invalid plan, and the spot short refusal.
Each hand-over is checked as the exit manager sees it: status OPEN_FILLED and ENTRY_FILLED on `positions`."""
from __future__ import annotations

from decimal import Decimal

from tests.test_position_engine_support import executed, far_below, make_stack_fixture  # noqa: F401  (fixture make_stack)


def _handed_over(s, qty: Decimal | None = None):
    st = s.wait_status("OPEN_FILLED")
    p = st.position
    assert "ENTRY_FILLED" in s.position_kinds(p.trade_key)
    filled = [o for o in s.entry_orders() if Decimal(o["executedQty"]) > 0]
    assert p.filled_qty == executed(filled), "position quantity differs from the exchange's fills"
    if qty is not None:
        assert p.filled_qty == qty
    assert s.wait_event("entry_filled").trade_key == p.trade_key
    s.wait_notified("opened", p.trade_key)
    return p


def _aborted(s, reason_part: str) -> str:
    ev = s.wait_event("entry_aborted")
    assert s.status() is None and "ENTRY_ABORTED" in s.position_kinds(ev.trade_key)
    s.wait_notified("entry_aborted", ev.trade_key)
    reason = ev.data["reason"]
    assert reason_part in reason, reason
    return reason


def test_market_only(make_stack):
    s = make_stack(ENTRY_MODE="MARKET_ONLY").up()
    s.signal("long", s.last())
    p = _handed_over(s)
    (o,) = s.entry_orders()
    assert o["type"] == "MARKET" and o["side"] == "BUY" and o["status"] == "FILLED"
    assert p.filled_qty == p.qty and p.avg_entry > 0


def test_limit_only_times_out_in_market_time_and_aborts(make_stack, market_bars):
    s = make_stack(ENTRY_MODE="LIMIT_ONLY", LIVE_ENTRY_TIMEOUT_SEC="60").up()
    s.signal("long", far_below(market_bars))
    s.wait_status("OPEN")
    s.admin("/advance", {"points": 3})  # 45 s of market time (wall time is what it is): not yet
    assert s.ignored(s.signal("long", s.last())) == "position_open"
    assert s.event_for("entry_timeout") is None
    s.admin("/advance", {"points": 2})  # 75 s
    _aborted(s, "entry canceled with nothing filled")
    (o,) = s.entry_orders()
    assert o["type"] == "LIMIT" and o["status"] == "CANCELED"
    assert s.event_for("planb_market") is None and s.event_for("planb_abort") is None


def test_limit_then_market_goes_to_market_within_tolerance(make_stack, market_bars):
    s = make_stack(ENTRY_MODE="LIMIT_THEN_MARKET", LIVE_ENTRY_TIMEOUT_SEC="30", PLANB_MAX_DEV_USD="100000",
                   PLANB_ABORT_IF_PAST_TP1="false").up()
    s.signal("long", far_below(market_bars))
    s.wait_status("OPEN")
    s.admin("/advance", {"points": 3})
    p = _handed_over(s)
    limit, market = sorted(s.entry_orders(), key=lambda o: o["clientOrderId"])
    assert limit["clientOrderId"].endswith("-en-0") and limit["status"] == "CANCELED" and limit["type"] == "LIMIT"
    assert market["clientOrderId"].endswith("-en-1") and market["type"] == "MARKET" and market["status"] == "FILLED"
    assert p.filled_qty == p.qty
    assert s.event_for("planb_market") is not None


def test_planb_aborts_when_the_price_moved_more_than_r_mult(make_stack, market_bars):
    s = make_stack(ENTRY_MODE="LIMIT_THEN_MARKET", LIVE_ENTRY_TIMEOUT_SEC="30", PLANB_ABORT_IF_PAST_TP1="false").up()
    s.signal("long", far_below(market_bars))
    s.wait_status("OPEN")
    s.admin("/advance", {"points": 3})
    assert "planb_price_moved" in s.wait_event("planb_abort").data["reason"]
    _aborted(s, "entry canceled with nothing filled")
    assert len(s.entry_orders()) == 1


def test_planb_aborts_past_tp1_and_by_usd_deviation(make_stack, market_bars):
    s = make_stack(ENTRY_MODE="LIMIT_THEN_MARKET", LIVE_ENTRY_TIMEOUT_SEC="30", PLANB_MAX_DEV_USD="100000").up()
    s.signal("long", far_below(market_bars))
    s.wait_status("OPEN")
    s.admin("/advance", {"points": 3})
    assert "planb_past_tp1" in s.wait_event("planb_abort").data["reason"]
    _aborted(s, "canceled")
    # PLANB_MAX_DEV_USD replaces the R multiple: 1 USD of deviation is too much.
    s2 = make_stack(ENTRY_MODE="LIMIT_THEN_MARKET", LIVE_ENTRY_TIMEOUT_SEC="30", PLANB_MAX_DEV_USD="1",
                    PLANB_MAX_DEV_R_MULT="100", PLANB_ABORT_IF_PAST_TP1="false").up()
    s2.signal("long", far_below(market_bars))
    s2.wait_status("OPEN")
    s2.admin("/advance", {"points": 3})
    assert "> 1" in s2.wait_event("planb_abort").data["reason"]
    assert len(s.entry_orders()) == 1 and len(s2.entry_orders()) == 1


def test_partial_limit_fill_then_market_for_the_remainder(make_stack):
    s = make_stack(ENTRY_MODE="LIMIT_THEN_MARKET", LIVE_ENTRY_TIMEOUT_SEC="30", PLANB_MAX_DEV_USD="100000",
                   PLANB_ABORT_IF_PAST_TP1="false", PAPER_PARTIAL_FILL_RATIO="0.5").up()
    st = None
    s.signal("long", s.last() - 50)
    st = s.wait_status("OPEN")
    s.price(st.position.entry_price - 1)  # trades through the limit: half of it fills
    s.wait(lambda: s.entry_orders()[0]["status"] == "PARTIALLY_FILLED", 10, "partial fill")
    s.admin("/advance", {"points": 3})
    p = _handed_over(s, qty=st.position.qty)
    limit, market = sorted(s.entry_orders(), key=lambda o: o["clientOrderId"])
    assert Decimal(0) < Decimal(limit["executedQty"]) < p.qty and limit["status"] == "CANCELED"
    assert Decimal(market["origQty"]) == p.qty - Decimal(limit["executedQty"])


def test_partial_limit_fill_kept_when_limit_only_times_out(make_stack):
    s = make_stack(ENTRY_MODE="LIMIT_ONLY", LIVE_ENTRY_TIMEOUT_SEC="30", PAPER_PARTIAL_FILL_RATIO="0.5").up()
    s.signal("long", s.last() - 50)
    st = s.wait_status("OPEN")
    s.price(st.position.entry_price - 1)
    s.wait(lambda: s.entry_orders()[0]["status"] == "PARTIALLY_FILLED", 10, "partial fill")
    s.price(st.position.entry_price + 100)  # back above the limit: the fill is partial
    s.admin("/advance", {"points": 3})
    p = _handed_over(s)
    (o,) = s.entry_orders()
    assert o["status"] == "CANCELED" and Decimal(0) < p.filled_qty < p.qty
    assert s.wait_event("entry_partial").data["filled"] == str(p.filled_qty)


def test_invalid_plan_aborts_the_signal_without_an_order(make_stack):
    s = make_stack(QTY_USD="3").up()  # 3 USD of BTC is below the 5 USD min notional
    key = s.signal("long", s.last())
    ev = s.wait_event("signal_aborted", signal_key=key)
    assert "min notional" in ev.data["reason"]
    assert s.entry_orders() == [] and s.status() is None and s.positions() == []
    assert "min notional" in s.wait_notified("entry_aborted")["message"]


def test_spot_refuses_a_short(make_stack):
    s = make_stack(TRADE_MODE="spot").up()
    key = s.signal("short", s.last())
    assert s.ignored(key) == "short_needs_margin (TRADE_MODE=spot)"
    assert s.entry_orders() == [] and s.status() is None


def test_partial_fill_is_handed_over_when_plan_b_is_rejected(make_stack):
    s = make_stack(ENTRY_MODE="LIMIT_THEN_MARKET", LIVE_ENTRY_TIMEOUT_SEC="30", PLANB_MAX_DEV_USD="100000",
                   PLANB_ABORT_IF_PAST_TP1="false", PAPER_PARTIAL_FILL_RATIO="0.5").up()
    s.signal("long", s.last() - 50)
    p0 = s.wait_status("OPEN").position
    s.price(p0.entry_price - 1)
    s.wait(lambda: s.entry_orders()[0]["status"] == "PARTIALLY_FILLED", 10, "partial fill")
    s.fault(reject_orders=1, path="/api/v3/order", side="BUY")  # the Plan B market order will be refused
    s.admin("/advance", {"points": 3})
    s.wait_event("entry_rejected")
    p = _handed_over(s)
    (o,) = s.entry_orders()
    assert Decimal(0) < p.filled_qty == Decimal(o["executedQty"]) < p.qty
    assert "ENTRY_ABORTED" not in s.position_kinds(p.trade_key)
