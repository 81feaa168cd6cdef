"""One position at a time: a signal is ignored, with its reason in `events`, while a position is PENDING, OPEN,
OPEN_FILLED or CLOSING, while halted, during LOCK_SEC after an entry and during COOLDOWN_SEC after a close.
Real processes on real Redis and the paper exchange."""
from __future__ import annotations

from tests.test_position_engine_support import make_stack_fixture  # noqa: F401  (fixture make_stack)


def test_ignored_while_halted_pending_open_filled_and_closing(make_stack):
    s = make_stack().up()
    last = s.last()

    s.command("halt", "maintenance")
    s.wait_event("halt_set", by="pytest")
    assert s.ignored(s.signal("long", last)) == "halted"
    s.command("resume")
    s.wait_event("halt_cleared")

    # PENDING: the exchange answers the entry with 429, so the intent is recorded but nothing is on the exchange.
    s.fault(http_429=1, path="/api/v3/order", side="BUY", retry_after=1)
    first = s.signal("long", last - 50)  # its LIMIT rests below the market
    s.wait_event("entry_send_failed")
    assert s.status() == "PENDING" and s.entry_orders() == []
    assert s.ignored(s.signal("long", last)) == "position_pending"

    # OPEN: after the back-off the engine finds no order under its client id and sends it (same id).
    st = s.wait_status("OPEN", 20)
    assert s.ignored(s.signal("long", last)) == "position_open"

    # OPEN_FILLED: the market trades through the limit; nobody runs the exit manager, so it stays filled.
    s.price(st.position.entry_price - 5)
    s.wait_status("OPEN_FILLED")
    assert s.ignored(s.signal("short", last)) == "position_open_filled"

    # CLOSING: the test plays the exit manager, the owner of that phase.
    def closing(st):
        st.position.status = "CLOSING"
        return st, []
    s.store().update(closing)
    assert s.ignored(s.signal("long", last)) == "position_closing"

    orders = s.entry_orders()
    assert len(orders) == 1 and orders[0]["clientOrderId"].endswith("-en-0") and orders[0]["status"] == "FILLED"
    assert s.state().position.signal_key == first


def test_lock_after_an_entry(make_stack):
    s = make_stack(LOCK_SEC="60").up()
    last = s.last()
    s.fault(reject_orders=1, path="/api/v3/order")
    rejected = s.signal("long", last)
    s.wait_event("entry_aborted")
    assert s.event_for("entry_rejected") is not None and s.status() is None
    reason = s.ignored(s.signal("long", last))
    assert reason.startswith("lock ("), reason
    s.admin("/advance", {"points": 5})  # 75 s of market time: the lock is over
    key = s.signal("long", s.last())
    s.wait_event("entry_planned", signal_key=key)
    # entry_planned is written before the order goes out: wait for it (a loaded machine is slower than the test)
    s.wait(lambda: len(s.entry_orders()) == 1, 15, "the entry order after the lock")
    assert rejected != key and len(s.entry_orders()) == 1


def test_cooldown_after_a_close(make_stack):
    s = make_stack(COOLDOWN_SEC="120", ENTRY_MODE="MARKET_ONLY").up("exit_manager")
    s.signal("long", s.last())
    s.wait_status("OPEN_FILLED")
    s.command("flatten")
    s.wait(lambda: s.state().closed_count == 1 and s.state().position is None, 30, "position closed by flatten")
    reason = s.ignored(s.signal("long", s.last()))
    assert reason.startswith("cooldown ("), reason
    s.admin("/advance", {"points": 9})  # 135 s of market time
    key = s.signal("long", s.last())
    s.wait_event("entry_planned", signal_key=key)
    s.wait_status("OPEN_FILLED")
