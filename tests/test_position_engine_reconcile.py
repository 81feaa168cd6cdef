"""Reconcile on start, before any new signal (spot, and margin from the configured wallet): entry orders of ours
(`<trade_key>-en-<n>`) that the state does not know are adopted into an empty slot (open -> OPEN, filled ->
OPEN_FILLED with its ENTRY_FILLED hand-over) or reported when they cannot be; the operator is told (event +
webhook). Nothing is placed or cancelled."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

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


def test_filled_entry_adopted_when_its_trades_answer_only_after_errors(make_stack):
    """Rebuilding a filled entry needs its commission (myTrades): a 5xx there is retried, not turned into an
    orphan report (before: reported, not adopted, and so left without a stop)."""
    s = make_stack(ENTRY_MODE="MARKET_ONLY").up()
    s.signal("long", s.last())
    before = s.wait_status("OPEN_FILLED").position
    s.kill("position_engine")
    _lose_state(s)
    s.fault(after_accept_5xx=2, path="/api/v3/myTrades")
    s.start("position_engine")
    s.wait_ready(after=1)
    p = s.wait_status("OPEN_FILLED").position
    assert p.adopted and p.entry_fee_base == before.entry_fee_base > 0
    assert not s.admin("/faults")["faults"], "the errors were not met"
    assert s.event_for("reconcile_orphan") is None


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


# ---- margin: the history comes from GET /sapi/v1/margin/allOrders of the configured wallet ------------------

CROSS = {"TRADE_MODE": "margin", "MARGIN_ISOLATED": "false"}
MANUAL = {"MARGIN_BORROW_MODE": "manual", "MARGIN_SIDE_EFFECT": "NO_SIDE_EFFECT"}
FOREIGN_TK = "250101-0000-L-abcdef"  # a trade key of ours that no state here knows


def _margin_client(s, mode: str) -> BinanceClient:
    return BinanceClient(s.env["BINANCE_BASE_URL"], "paper-key", "paper-secret", margin=mode)


def test_margin_filled_short_adopted_with_its_borrow_and_repaid_after_the_close(make_stack):
    s = make_stack(**CROSS, **MANUAL, ENTRY_MODE="MARKET_ONLY").up()
    s.signal("short", s.last())
    before = s.wait_status("OPEN_FILLED").position
    assert before.margin_borrowed > 0
    s.kill("position_engine")
    _lose_state(s)
    s.start("position_engine")
    s.wait_ready(after=1)
    p = s.wait_status("OPEN_FILLED").position
    assert p.adopted and p.trade_key == before.trade_key and p.side == "short"
    assert (p.filled_qty, p.filled_quote, p.avg_entry, p.entry_fee_base) == (
        before.filled_qty, before.filled_quote, before.avg_entry, Decimal(0))
    assert s.position_kinds(before.trade_key) == ["ENTRY_FILLED"]
    ev = s.wait_event("reconcile_adopted")
    assert ev.trade_key == before.trade_key and ev.data["status"] == "OPEN_FILLED" and ev.data["side"] == "short"
    # The lost state held the manual borrow: the exit manager repays after the close only what the position records.
    assert (p.margin_borrow_asset, p.margin_borrowed) == ("BTC", before.margin_borrowed)
    assert p.margin_borrow_tran_id == -1, "a recorded borrow must never be repeated"
    s.start("exit_manager")
    s.wait(lambda: s.events("exit_manager_ready"), 30, "exit_manager_ready")
    s.command("flatten")
    s.wait(lambda: s.state().position is None, 30, "adopted short closed")
    repaid = s.wait_event("margin_repaid")
    assert repaid.trade_key == before.trade_key and Decimal(str(repaid.data["debt_left"])) == 0
    assert Decimal(s.margin_wallet()["BTC"]["borrowed"]) == 0


def test_margin_filled_long_placed_while_the_engine_was_down_is_adopted(make_stack):
    s = make_stack(TRADE_MODE="margin", MARGIN_ISOLATED="true", MARGIN_BORROW_MODE="auto",
                   MARGIN_SIDE_EFFECT="AUTO_BORROW_REPAY").up()
    s.kill("position_engine")
    cid = f"{FOREIGN_TK}-en-0"
    o = _margin_client(s, "isolated").place_order("BTCUSDC", "BUY", "MARKET", Decimal("0.002"), client_order_id=cid)
    assert o.status == "FILLED" and o.is_isolated
    s.start("position_engine")
    s.wait_ready(after=1)
    p = s.wait_status("OPEN_FILLED").position
    assert p.adopted and p.trade_key == FOREIGN_TK and p.entry_client_id == cid and p.side == "long"
    assert (p.filled_qty, p.filled_quote) == (o.executed_qty, o.cummulative_quote_qty)
    assert p.avg_entry == (o.cummulative_quote_qty / o.executed_qty).quantize(Decimal("0.0001"))
    fee = sum((f.commission for f in o.fills if f.commission_asset == "BTC"), Decimal(0))
    assert fee > 0 and p.entry_fee_base == fee, "the base-asset commission is not ours to sell"
    assert p.margin_borrowed == 0, "auto mode: the exchange repays, nothing to record"
    assert s.position_kinds(FOREIGN_TK) == ["ENTRY_FILLED"]
    assert s.wait_event("reconcile_adopted").data["client_id"] == cid
    assert s.wait_notified("reconcile_adopted", FOREIGN_TK)["severity"] == "WARN"
    s.start("exit_manager")
    s.wait(lambda: len([x for x in s.open_orders() if "-en-" not in x["clientOrderId"]]) == 5, 30,
           "exit legs resting for the adopted position")
    assert {x["account"] for x in s.open_orders()} == {"ISOLATED"}


@pytest.mark.parametrize("mode", ["cross", "isolated"])
def test_margin_open_entry_placed_while_the_engine_was_down_is_adopted_as_open(make_stack, mode):
    s = make_stack(TRADE_MODE="margin", MARGIN_ISOLATED=str(mode == "isolated").lower(), **MANUAL).up()
    s.kill("position_engine")
    client = _margin_client(s, mode)
    client.borrow("USDC", Decimal(20), "BTCUSDC" if mode == "isolated" else None)  # the manual borrow before it
    cid, limit = f"{FOREIGN_TK}-en-0", s.last() - 100
    client.place_order("BTCUSDC", "BUY", "LIMIT", Decimal("0.002"), client_order_id=cid, price=limit,
                       time_in_force="GTC")
    s.start("position_engine")
    s.wait_ready(after=1)
    ev = s.wait_event("reconcile_adopted")
    assert ev.trade_key == FOREIGN_TK and ev.data["status"] == "OPEN"
    p = s.state().position
    assert p.adopted and p.status == "OPEN" and (p.entry_price, p.qty) == (limit, Decimal("0.002"))
    assert (p.margin_borrow_asset, p.margin_borrowed, p.margin_borrow_tran_id) == ("USDC", Decimal(20), -1)
    assert s.position_kinds(FOREIGN_TK) == ["ENTRY_PLACED"]
    s.price(limit - 1)
    p = s.wait_status("OPEN_FILLED").position
    assert p.filled_qty == Decimal("0.002") and p.avg_entry == limit
    assert s.position_kinds(FOREIGN_TK) == ["ENTRY_PLACED", "ENTRY_FILLED"]
    (entry,) = s.entry_orders()
    assert entry["account"] == mode.upper()
