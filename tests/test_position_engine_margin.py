"""TRADE_MODE=margin: shorts are allowed; MARGIN_BORROW_MODE auto sends MARGIN_SIDE_EFFECT with the entry,
manual borrows what the entry lacks first (quote for a long, base for a short, plus MARGIN_BORROW_BUFFER_PCT)
and records it in the position with the trade key, for the exit manager to repay after the close."""
from __future__ import annotations

from decimal import Decimal

from tests.test_position_engine_support import make_stack_fixture  # noqa: F401  (fixture make_stack)

MARGIN = {"TRADE_MODE": "margin", "MARGIN_ISOLATED": "false", "ENTRY_MODE": "MARKET_ONLY"}


def test_auto_borrow_short_sends_the_side_effect(make_stack):
    s = make_stack(**MARGIN, MARGIN_BORROW_MODE="auto", MARGIN_SIDE_EFFECT="AUTO_BORROW_REPAY").up()
    s.signal("short", s.last())
    st = s.wait_status("OPEN_FILLED")
    p = st.position
    assert p.side == "short" and "ENTRY_FILLED" in s.position_kinds(p.trade_key)
    (o,) = s.entry_orders()
    assert o["account"] == "CROSS" and o["side"] == "SELL" and o["sideEffectType"] == "AUTO_BORROW_REPAY"
    assert Decimal(s.margin_wallet()["BTC"]["borrowed"]) >= p.filled_qty
    assert p.margin_borrowed == 0 and p.margin_borrow_tran_id == 0, "auto mode records no manual borrow"


def test_manual_borrow_before_a_short_is_recorded_with_the_trade(make_stack):
    s = make_stack(**MARGIN, MARGIN_BORROW_MODE="manual", MARGIN_SIDE_EFFECT="NO_SIDE_EFFECT").up()
    s.signal("short", s.last())
    p = s.wait_status("OPEN_FILLED").position
    ev = s.wait_event("margin_borrowed")
    assert ev.trade_key == p.trade_key and ev.data["asset"] == "BTC"
    assert p.margin_borrow_asset == "BTC" and p.margin_borrow_tran_id > 0
    assert p.margin_borrowed == (p.qty * Decimal("1.003")).quantize(Decimal("0.00001"), rounding="ROUND_CEILING")
    assert Decimal(s.margin_wallet()["BTC"]["borrowed"]) == p.margin_borrowed
    (o,) = s.entry_orders()
    assert o["sideEffectType"] == "NO_SIDE_EFFECT" and o["status"] == "FILLED"
    kinds = [e.kind for e in s.events() if e.trade_key == p.trade_key]
    assert kinds.index("margin_borrowed") < kinds.index("entry_sent")


def test_manual_borrow_for_a_long_covers_only_the_quote_shortfall(make_stack):
    s = make_stack(**MARGIN, MARGIN_BORROW_MODE="manual", MARGIN_SIDE_EFFECT="NO_SIDE_EFFECT",
                   PAPER_BALANCES="USDC=40,BTC=0").up()
    s.signal("long", s.last())
    p = s.wait_status("OPEN_FILLED").position
    need = p.qty * p.entry_price * Decimal("1.003") - 40
    assert p.margin_borrow_asset == "USDC" and Decimal(0) < p.margin_borrowed - need < Decimal("0.01") + Decimal("1e-9")
    assert Decimal(s.margin_wallet()["USDC"]["borrowed"]) == p.margin_borrowed


def test_manual_borrow_is_repaid_when_the_entry_is_aborted(make_stack):
    s = make_stack(**MARGIN, MARGIN_BORROW_MODE="manual", MARGIN_SIDE_EFFECT="NO_SIDE_EFFECT").up()
    s.fault(reject_orders=1, path="/sapi/v1/margin/order")
    s.signal("short", s.last())
    s.wait_event("entry_aborted")
    assert s.wait_event("margin_repaid").data["asset"] == "BTC"
    assert Decimal(s.margin_wallet()["BTC"]["borrowed"]) == 0


def test_short_limit_rests_above_and_fills_when_traded_through(make_stack):
    s = make_stack(**{**MARGIN, "ENTRY_MODE": "LIMIT_ONLY"}, MARGIN_BORROW_MODE="auto",
                   MARGIN_SIDE_EFFECT="AUTO_BORROW_REPAY").up()
    last = s.last()
    s.signal("short", last + 50)
    p0 = s.wait_status("OPEN").position
    assert p0.entry_price == last + Decimal("49.50") and p0.sl > p0.entry_price > p0.tp1 > p0.tp2
    s.price(p0.entry_price + 1)
    p = s.wait_status("OPEN_FILLED").position
    (o,) = s.entry_orders()
    assert o["type"] == "LIMIT" and o["side"] == "SELL" and Decimal(o["price"]) == p0.entry_price
    assert p.filled_qty == p.qty and p.avg_entry == p0.entry_price


def test_killed_during_the_manual_borrow_borrows_once(make_stack):
    s = make_stack(**MARGIN, MARGIN_BORROW_MODE="manual", MARGIN_SIDE_EFFECT="NO_SIDE_EFFECT").up()
    s.fault(after_accept_delay_ms=10000, path="/sapi/v1/margin/borrow-repay")  # borrowed, reply held
    s.signal("short", s.last())
    s.wait(lambda: Decimal(s.margin_wallet().get("BTC", {}).get("borrowed", "0")) > 0, 10, "borrow executed")
    s.kill("position_engine")
    p = s.state().position
    assert p.status == "PENDING" and p.margin_borrow_asset == "BTC" and p.margin_borrow_tran_id == 0
    s.start("position_engine")
    s.wait_ready(after=1)
    p = s.wait_status("OPEN_FILLED", 30).position
    assert s.event_for("margin_borrow_confirmed") is not None
    assert p.margin_borrow_tran_id == -1
    assert Decimal(s.margin_wallet()["BTC"]["borrowed"]) == p.margin_borrowed, "borrowed twice"
    assert len(s.entry_orders()) == 1
