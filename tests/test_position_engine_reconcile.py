"""Reconcile on start, before any new signal: entry orders of ours (`<trade_key>-en-<n>`) that the state does not
know are adopted into an empty slot (open -> OPEN, filled -> OPEN_FILLED with its ENTRY_FILLED hand-over) or
reported when they cannot be; the operator is told (event + webhook). Nothing is placed or cancelled."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from shared.adapters.binance_rest import BinanceClient
from tests.test_position_engine_support import make_stack_fixture  # noqa: F401  (fixture make_stack)


def _lose_state(s) -> None:
    """Redis lost the state document and the hand-over stream, and the snapshot file is gone too."""
    s.r.delete(f"{s.prefix}state", f"{s.prefix}positions")
    Path(s.env["STATE_FN"]).unlink()


def test_open_entry_adopted_after_state_loss_before_the_next_signal(make_stack):
    s = make_stack().up()
    s.signal("long", s.last() - 50)
    before = s.wait_status("OPEN").position
    s.kill("position_engine")
    _lose_state(s)
    assert s.state().position is None
    waiting = s.signal("long", s.last())  # arrives while the engine is down
    s.start("position_engine")
    s.wait_ready(after=1)
    ev = s.wait_event("reconcile_adopted")
    assert ev.trade_key == before.trade_key and ev.data["client_id"] == before.entry_client_id
    assert s.ignored(waiting) == "position_open", "a signal was taken before reconciliation"
    p = s.state().position
    assert p.adopted and p.entry_client_id == before.entry_client_id and p.side == "long"
    assert (p.entry_price, p.qty, p.sl, p.tp1, p.tp2) == (before.entry_price, before.qty, before.sl, before.tp1,
                                                          before.tp2)
    assert s.wait_notified("reconcile_adopted", before.trade_key)["severity"] == "WARN"
    s.price(p.entry_price - 1)
    st = s.wait_status("OPEN_FILLED")
    assert "ENTRY_FILLED" in s.position_kinds(before.trade_key)
    assert st.position.filled_qty == before.qty and len(s.entry_orders()) == 1


def test_filled_entry_adopted_and_handed_over_after_state_loss(make_stack):
    s = make_stack(ENTRY_MODE="MARKET_ONLY").up()
    s.signal("long", s.last())
    before = s.wait_status("OPEN_FILLED").position
    s.kill("position_engine")
    _lose_state(s)
    s.start("position_engine")
    s.wait_ready(after=1)
    p = s.wait_status("OPEN_FILLED").position
    assert p.adopted and p.trade_key == before.trade_key
    assert (p.filled_qty, p.entry_fee_base, p.filled_quote) == (before.filled_qty, before.entry_fee_base,
                                                                before.filled_quote)
    assert s.position_kinds(before.trade_key) == ["ENTRY_FILLED"]
    s.wait_notified("reconcile_adopted", before.trade_key)
    # The exit manager takes the adopted position over and protects it.
    s.start("exit_manager")
    s.wait(lambda: len([o for o in s.open_orders() if "-en-" not in o["clientOrderId"]]) == 5, 30,
           "exit legs resting for the adopted position")
    assert len(s.entry_orders()) == 1


def test_unknown_entry_reported_not_adopted_when_the_slot_is_taken(make_stack):
    s = make_stack().up()
    s.signal("long", s.last() - 50)
    mine = s.wait_status("OPEN").position
    s.kill("position_engine")
    client = BinanceClient(s.env["BINANCE_BASE_URL"], "paper-key", "paper-secret")
    foreign = "250101-0000-L-abcdef-en-0"  # one of our ids, of a trade this state does not know
    client.place_order("BTCUSDC", "BUY", "LIMIT", Decimal("0.0002"), client_order_id=foreign,
                       price=s.last() - 100, time_in_force="GTC")
    s.start("position_engine")
    s.wait_ready(after=1)
    ev = s.wait_event("reconcile_orphan")
    assert ev.data["client_id"] == foreign and "slot" in ev.data["reason"]
    assert s.wait_notified("reconcile_orphan")["severity"] == "ERROR"
    assert s.state().position.trade_key == mine.trade_key
    by_id = {o["clientOrderId"]: o for o in s.orders()}
    assert by_id[foreign]["status"] == "NEW", "reconcile must not cancel anything"
    assert s.events("reconcile_done")[-1].data["orphan_open"] == 1
