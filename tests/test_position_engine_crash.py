"""Exactly once: an UNKNOWN outcome (5xx after accept / -1007, a timeout) is resolved by querying the client id,
never by re-sending; and position_engine is SIGKILLed at each step of the entry (before the order reaches the
exchange, after the fill but before the hand-over, between Plan B's cancel and its market order's reply). Each
time: exactly one order per attempt on the exchange and a completed hand-over. (Killed between send and reply:
tests/test_pipeline_e2e.py.)"""
from __future__ import annotations

from tests.test_position_engine_support import far_below, make_stack_fixture  # noqa: F401  (fixture make_stack)


def _one_entry_handed_over(s) -> None:
    st = s.wait_status("OPEN_FILLED", 30)
    (o,) = s.entry_orders()
    assert o["status"] == "FILLED" and o["clientOrderId"] == st.position.entry_client_id
    assert s.position_kinds(st.position.trade_key).count("ENTRY_FILLED") == 1


def test_unknown_outcome_5xx_is_resolved_by_query_not_resend(make_stack):
    s = make_stack().up()
    # The order is executed, the reply is 503/-1007, and the next query right after says -2013 (lagging index).
    s.fault(after_accept_5xx=1, path="/api/v3/order", side="BUY")
    s.fault(transient_2013=1)
    s.signal("long", s.last())
    s.wait_event("entry_unknown_outcome")
    _one_entry_handed_over(s)
    assert s.event_for("entry_resend") is None


def test_unknown_outcome_timeout_is_resolved_by_query(make_stack):
    s = make_stack(BINANCE_TIMEOUT_SEC="0.5").up()
    s.fault(timeout=1, timeout_ms=1500, path="/api/v3/order", side="BUY")
    s.signal("long", s.last())
    assert "no reply" in s.wait_event("entry_unknown_outcome").data["error"]
    _one_entry_handed_over(s)
    assert s.event_for("entry_resend") is None


def test_killed_before_the_order_reached_the_exchange(make_stack):
    s = make_stack().up()
    last, ts = s.last(), s.market_ts()
    s.kill("paper_exchange")  # the exchange is unreachable: the intent is recorded, nothing is accepted
    s.signal("long", last, ts=ts)
    s.wait_event("entry_send_failed")
    assert s.status() == "PENDING"
    s.kill("position_engine")
    s.restart_paper()
    assert s.entry_orders() == []
    s.start("position_engine")
    s.wait_ready(after=1)
    _one_entry_handed_over(s)
    assert s.event_for("entry_resend") is not None


def test_killed_after_the_fill_before_the_hand_over(make_stack):
    s = make_stack().up()
    s.signal("long", s.last() - 50)
    st = s.wait_status("OPEN")
    # The fill is learnt from a query; its commission from myTrades, whose reply is held while we kill.
    s.fault(after_accept_delay_ms=10000, path="/api/v3/myTrades")
    s.price(st.position.entry_price - 1)
    s.wait(lambda: s.entry_orders()[0]["status"] == "FILLED", 10, "entry filled on the exchange")
    s.wait(lambda: not s.admin("/faults")["faults"], 10, "engine asking for the fill's trades")
    s.kill("position_engine")
    assert s.status() == "OPEN" and "ENTRY_FILLED" not in s.position_kinds()
    s.start("position_engine")
    s.wait_ready(after=1)
    _one_entry_handed_over(s)


def test_killed_while_planb_market_order_reply_is_pending(make_stack, market_bars):
    s = make_stack(ENTRY_MODE="LIMIT_THEN_MARKET", LIVE_ENTRY_TIMEOUT_SEC="30", PLANB_MAX_DEV_USD="100000",
                   PLANB_ABORT_IF_PAST_TP1="false").up()
    s.signal("long", far_below(market_bars))
    s.wait_status("OPEN")
    s.fault(after_accept_delay_ms=10000, path="/api/v3/order", side="BUY")
    s.admin("/advance", {"points": 3})
    s.wait(lambda: len(s.entry_orders()) == 2, 10, "Plan B market order accepted")
    s.kill("position_engine")
    s.fault(clear=True)
    assert s.status() == "PENDING" and s.state().position.entry_client_id.endswith("-en-1")
    s.start("position_engine")
    s.wait_ready(after=1)
    st = s.wait_status("OPEN_FILLED", 30)
    limit, market = sorted(s.entry_orders(), key=lambda o: o["clientOrderId"])
    assert limit["status"] == "CANCELED" and market["status"] == "FILLED" and market["type"] == "MARKET"
    assert st.position.filled_qty == st.position.qty
