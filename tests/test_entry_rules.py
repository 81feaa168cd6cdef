"""Unit tests of the pure entry rules (shared/domain/entry_rules.py)."""
from __future__ import annotations

from decimal import Decimal as D

import msgspec
import pytest

from shared.domain.entry_rules import (
    Orphans,
    adopted_entry_price,
    adopted_plan,
    adopted_position,
    borrow_need,
    entry_attempt_of,
    entry_order_args,
    find_orphans,
    order_side,
    pending_position,
    planb_decision,
    refusal,
    side_refusal,
    wants_planb,
)
from shared.domain.exit_plan import PlanError, build_plan
from shared.domain.messages import Signal
from shared.domain.orders import Order
from shared.domain.position import ClosedTrade, State
from shared.domain.symbol import SymbolFilters

F = SymbolFilters("BTCUSDC", "BTC", "USDC", D("0.01"), D("0.00001"), D("0.00001"), D(9000), D(5))
TK = "250113-2000-L-abc123"


def _sig(kind="long", price=D(95000)) -> Signal:
    return Signal(key=f"PEAK|2025-01-13T20:00|{kind}|{price}", ts=1736798400.0, kind=kind, price=price)


def _pos(kind="long", mode="LIMIT_THEN_MARKET", price=D(95000)):
    plan = build_plan(kind, price, F, offset=D("0.5"), qty_usd=D(100), sl_pct=D("0.002"), r_list=(D(1), D(2)),
                      swing_extreme=None)
    return pending_position(_sig(kind, price), plan, "BTCUSDC", mode, 1000.0, 2000.0)


def _order(cid: str, status="NEW", side="BUY", executed=D(0), price=D("95000.50"), type_="LIMIT", qty=D("0.00105")):
    return Order(symbol="BTCUSDC", order_id=abs(hash(cid)) % 10**6, client_order_id=cid, price=price, orig_qty=qty,
                 executed_qty=executed, cummulative_quote_qty=executed * (price or D(95000)), status=status,
                 type=type_, side=side, time=1736798400000)


# ---- gates -------------------------------------------------------------------------------------------


@pytest.mark.parametrize("status", ["PENDING", "OPEN", "OPEN_FILLED", "CLOSING"])
def test_refused_while_a_position_is_live(status):
    p = msgspec.structs.replace(_pos(), status=status)
    assert refusal(State(position=p), 0.0, False) == f"position_{status.lower()}"


def test_refusal_order_and_windows():
    assert refusal(State(), 100.0, True) == "halted"
    assert refusal(State(cooldown_until=160.0), 100.0, False) == "cooldown (60s left)"
    assert refusal(State(lock_until=115.0), 100.0, False) == "lock (15s left)"
    assert refusal(State(cooldown_until=100.0, lock_until=100.0), 100.0, False) is None  # windows end exactly
    assert refusal(State(position=_pos()), 100.0, True) == "halted"


def test_short_needs_margin():
    assert side_refusal("short", "spot") == "short_needs_margin (TRADE_MODE=spot)"
    assert side_refusal("short", "margin") is None and side_refusal("long", "spot") is None


# ---- the entry order ---------------------------------------------------------------------------------


def test_pending_position_fixes_the_client_id_before_sending():
    p = _pos()
    assert p.status == "PENDING" and p.entry_client_id == f"{p.trade_key}-en-0" and p.entry_sent_at == 2000.0
    assert p.entry_price == D("95000.50") and p.created_at == 1000.0


def test_entry_order_args_by_mode_and_attempt():
    assert entry_order_args(_pos()) == {"side": "BUY", "order_type": "LIMIT", "quantity": D("0.00105"),
                                        "price": D("95000.50"), "time_in_force": "GTC"}
    assert entry_order_args(_pos("short", "MARKET_ONLY"))["order_type"] == "MARKET"
    assert order_side("short") == "SELL"
    planb = msgspec.structs.replace(_pos(), entry_attempt=1, filled_qty=D("0.0004"))
    assert entry_order_args(planb) == {"side": "BUY", "order_type": "MARKET", "quantity": D("0.00065")}


def test_wants_planb_only_for_limit_then_market_first_attempt():
    assert wants_planb(_pos(), True)
    assert not wants_planb(_pos(), False)
    assert not wants_planb(_pos(mode="LIMIT_ONLY"), True)
    assert not wants_planb(msgspec.structs.replace(_pos(), entry_attempt=1), True)
    assert not wants_planb(msgspec.structs.replace(_pos(), entry_cancel_requested=True), True)


def _planb(side, price, **kw):
    p = _pos(side)
    args = {"max_dev_r_mult": D("0.25"), "max_dev_usd": D(0), "abort_if_past_tp1": True, "require_price": True} | kw
    return planb_decision(side, price, p, **args), p


def test_planb_long():
    reason, p = _planb("long", D("95000.50") + D("47.50"))  # r = 190.00 -> 0.25 R = 47.50
    assert reason is None
    reason, _ = _planb("long", D("95000.50") + D("47.51"))
    assert reason.startswith("planb_price_moved")
    reason, _ = _planb("long", p.tp1, max_dev_usd=D(10000))
    assert reason.startswith("planb_past_tp1")
    assert _planb("long", p.tp1, max_dev_usd=D(10000), abort_if_past_tp1=False)[0] is None
    assert _planb("long", D("95000.50") + 2, max_dev_usd=D(1))[0].startswith("planb_price_moved")
    assert _planb("long", D(90000))[0] is None  # a better price is never a reason to abort


def test_planb_short_and_missing_price():
    reason, p = _planb("short", p_entry := D("94999.50"))
    assert reason is None and p.entry_price == p_entry
    assert _planb("short", p.entry_price - 100)[0].startswith("planb_price_moved")
    assert _planb("short", p.tp1, max_dev_usd=D(10000))[0].startswith("planb_past_tp1")
    assert _planb("short", None)[0] == "planb_no_price"
    assert _planb("short", None, require_price=False)[0] is None


# ---- margin --------------------------------------------------------------------------------------------


def test_borrow_need():
    short = borrow_need("short", D("0.00105"), D(95000), D(0), F, D("0.003"))
    assert (short.asset, short.amount) == ("BTC", D("0.00106"))  # 0.0010532 rounded up to the step
    assert borrow_need("short", D("0.00105"), D(95000), D("0.002"), F, D("0.003")).amount == 0
    long_ = borrow_need("long", D("0.001"), D(95000), D(40), F, D("0.003"))
    assert (long_.asset, long_.amount) == ("USDC", D("55.29"))  # 95.285 - 40, rounded up to the cent
    assert borrow_need("long", D("0.001"), D(95000), D(10000), F, D("0.003")).amount == 0


# ---- reconcile -----------------------------------------------------------------------------------------


def test_entry_attempt_of():
    assert entry_attempt_of(f"{TK}-en-0") == 0 and entry_attempt_of(f"{TK}-en-3") == 3
    assert entry_attempt_of(f"{TK}-t1-0") is None and entry_attempt_of("web_123") is None


def test_find_orphans():
    other = "250113-2100-L-def456"
    old = "250112-1000-L-000000"
    open_orders = [_order(f"{TK}-en-0"), _order(f"{other}-t1-0", side="SELL"), _order("manual-1")]
    history = open_orders + [
        _order(f"{old}-en-0", "FILLED", executed=D("0.00105")),       # closed long ago: its exits followed
        _order(f"{old}-t1-0", "FILLED", side="SELL"),
        _order(f"{other}-en-0", "CANCELED", executed=D("0.0004")),    # Plan B trade, unknown, never protected...
        _order(f"{other}-en-1", "FILLED", executed=D("0.00065"), type_="MARKET", price=D(0)),
    ]
    o = find_orphans(State(), open_orders, history)
    assert [x.client_order_id for x in o.open_entries] == [f"{TK}-en-0"]
    assert o.filled_entries == []  # ...but it has an open exit order, so it is the exit manager's
    assert [x.client_order_id for x in o.open_exits] == [f"{other}-t1-0"]
    history2 = [h for h in history if h.client_order_id != f"{other}-t1-0"]
    o2 = find_orphans(State(), [open_orders[0]], history2)
    assert [x.client_order_id for x in o2.filled_entries] == [f"{other}-en-1"]  # the latest attempt
    known = State(last_closed=ClosedTrade(trade_key=other, symbol="BTCUSDC", side="long", qty=D(1), avg_entry=D(1),
                                          avg_exit=D(1), pnl_quote=D(0), r_multiple=D(0), exit_reason="tp",
                                          opened_at=0, closed_at=0))
    assert find_orphans(known, [], history2) == Orphans(open_entries=[], filled_entries=[], open_exits=[])
    stale = _order(f"{other}-en-2")
    assert find_orphans(known, [stale], history2 + [stale]).stale_entries == [stale]


def test_adopted_position_from_an_open_limit_entry():
    o = _order(f"{TK}-en-0", price=D("95000.50"))
    plan = adopted_plan("long", adopted_entry_price(o, F.tick_size), None, D("0.002"), (D(1), D(2)), F.tick_size)
    p = adopted_position(o, plan, "BTCUSDC", 50.0, 60.0)
    ref = _pos()
    assert (p.trade_key, p.status, p.side, p.qty, p.entry_client_id) == (TK, "OPEN", "long", D("0.00105"), o.client_order_id)
    assert (p.sl, p.tp1, p.tp2, p.r) == (ref.sl, ref.tp1, ref.tp2, ref.r) and p.adopted


def test_adopted_market_entry_price_and_invalid_plan():
    o = _order(f"{TK}-en-1", "FILLED", executed=D("0.001"), price=D(0), type_="MARKET")
    o.cummulative_quote_qty = D("95.0005")
    assert adopted_entry_price(o, F.tick_size) == D("95000.50")
    with pytest.raises(PlanError):
        adopted_entry_price(_order(f"{TK}-en-0", price=D(0), type_="MARKET"), F.tick_size)
    with pytest.raises(PlanError):
        adopted_plan("long", D("0.01"), None, D("0.002"), (D(1), D(2)), F.tick_size)
