"""Operator commands on `commands`: halt / resume (see also the gates tests) and cancel_entry: the entry is
cancelled with no Plan B, a partial fill is kept and handed over, an entry not yet on the exchange is never
sent, and without an entry the command is a recorded no-op."""
from __future__ import annotations

from decimal import Decimal

from tests.test_position_engine_support import make_stack_fixture  # noqa: F401  (fixture make_stack)

PLANB = {"ENTRY_MODE": "LIMIT_THEN_MARKET", "PLANB_MAX_DEV_USD": "100000", "PLANB_ABORT_IF_PAST_TP1": "false"}


def test_halt_and_resume(make_stack):
    s = make_stack().up()
    s.command("halt", "news")
    s.wait_event("halt_set", reason="news")
    assert s.r.exists(f"{s.prefix}halt")
    assert s.ignored(s.signal("long", s.last())) == "halted"
    s.wait_notified("halted")
    s.command("resume")
    s.wait_event("halt_cleared")
    assert not s.r.exists(f"{s.prefix}halt")
    key = s.signal("long", s.last())
    s.wait_event("entry_planned", signal_key=key)


def test_cancel_entry_cancels_without_plan_b(make_stack):
    s = make_stack(**PLANB).up()
    s.signal("long", s.last() - 50)
    s.wait_status("OPEN")
    s.command("cancel_entry", "changed my mind")
    ev = s.wait_event("entry_aborted")
    assert "cancelled by operator" in ev.data["reason"]
    (o,) = s.entry_orders()
    assert o["status"] == "CANCELED"
    assert s.event_for("planb_market") is None and s.status() is None
    assert s.position_kinds(ev.trade_key) == ["ENTRY_PLACED", "ENTRY_ABORTED"]


def test_cancel_entry_keeps_a_partial_fill(make_stack):
    s = make_stack(**PLANB, PAPER_PARTIAL_FILL_RATIO="0.5").up()
    s.signal("long", s.last() - 50)
    p0 = s.wait_status("OPEN").position
    s.price(p0.entry_price - 1)
    s.wait(lambda: s.entry_orders()[0]["status"] == "PARTIALLY_FILLED", 10, "partial fill")
    s.price(p0.entry_price + 100)
    s.command("cancel_entry")
    p = s.wait_status("OPEN_FILLED").position
    (o,) = s.entry_orders()
    assert o["status"] == "CANCELED" and p.filled_qty == Decimal(o["executedQty"]) < p.qty
    assert "ENTRY_FILLED" in s.position_kinds(p.trade_key) and s.event_for("planb_market") is None


def test_cancel_entry_before_the_order_reached_the_exchange(make_stack):
    s = make_stack(**PLANB).up()
    last, ts = s.last(), s.market_ts()
    s.kill("paper_exchange")
    s.signal("long", last, ts=ts)
    s.wait_event("entry_send_failed")
    s.command("cancel_entry")
    s.wait_event("entry_cancel_requested")
    s.restart_paper()
    ev = s.wait_event("entry_aborted", 20)
    assert "before the order reached the exchange" in ev.data["reason"]
    assert s.entry_orders() == [] and s.event_for("entry_resend") is None


def test_cancel_entry_without_an_entry_is_a_noop(make_stack):
    s = make_stack().up()
    s.command("cancel_entry")
    assert s.wait_event("command_noop").data["reason"] == "no pending entry"
