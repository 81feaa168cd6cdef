"""Every way a long leaves the market, through the real processes on real Redis and the paper exchange
(PAPER_SPEED=0: the market moves only when the test says so). The `SIDES` tests run a long on spot and a short on
cross margin with a manual borrow (whose repayment, after buys grossed up for their commission, leaves no debt)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from tests.stack import Stack
from tests.test_exit_manager_support import (  # noqa: F401 - make is a fixture
    make,
    ISOLATED_AUTO,
    MARGIN,
    SIDES,
    make_side,
    alerts,
    assert_closed,
    assert_no_duplicates,
    assert_stops_only_tighten,
    events,
    leg,
    legs_placed,
    open_long,
    price,
    restart_exit_manager,
    settle,
    trade_orders,
    wait_closed,
    wait_event,
)

TICK = Decimal("0.01")
STEP_QTY = Decimal("0.00001")




@pytest.mark.parametrize("side", SIDES)
def test_stop_loss_first_all_three_stops(make, side):
    s, side = make_side(make, side)
    pos = open_long(s, side=side)
    price(s, pos.sl)
    wait_closed(s)
    assert_closed(s, pos.trade_key, "stop")
    assert all(lg.exit_reason == "stop" for lg in s.state().last_closed.legs)
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty, side)


@pytest.mark.parametrize("side", SIDES)
def test_tp1_then_rest_stopped_at_break_even(make, side):
    s, side = make_side(make, side)
    pos = open_long(s, side=side)
    through = TICK if side == "long" else -TICK
    price(s, pos.tp1 + through)
    wait_event(s, "break_even_done")
    be = leg(s, "trail").stop_price
    assert (be >= pos.avg_entry if side == "long" else be <= pos.avg_entry) and leg(s, "tp2").stop_price == be
    s.wait(lambda: all(lg.status in ("PLACED", "DONE") for lg in s.state().position.legs), 10, "moves done")
    price(s, be)
    wait_closed(s)
    assert_closed(s, pos.trade_key, "stop")
    reasons = {lg.name: lg.exit_reason for lg in s.state().last_closed.legs}
    assert reasons == {"tp1": "tp", "tp2": "stop", "trail": "stop"}
    assert s.state().last_closed.pnl_quote > 0
    assert_stops_only_tighten(s, pos.trade_key, side)
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty, side)
    assert events(s, "stop_move_window", pos.trade_key)


@pytest.mark.parametrize("side", SIDES)
def test_tp2_and_tp1_in_one_jump_then_trailing_leg_at_break_even(make, side):
    s, side = make_side(make, side)
    pos = open_long(s, side=side)
    price(s, pos.tp2 + (TICK if side == "long" else -TICK))  # through both take-profits in one point
    wait_event(s, "trailing_on")
    wait_event(s, "break_even_done")
    s.wait(lambda: leg(s, "trail").status == "PLACED", 10, "trail stop resting")
    price(s, leg(s, "trail").stop_price)
    wait_closed(s)
    assert_closed(s, pos.trade_key, "stop")
    reasons = {lg.name: lg.exit_reason for lg in s.state().last_closed.legs}
    assert reasons == {"tp1": "tp", "tp2": "tp", "trail": "stop"}
    assert_stops_only_tighten(s, pos.trade_key, side)
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty, side)


def test_manual_close_on_the_exchange(make):
    s = make()
    pos = open_long(s)
    em = s.procs["exit_manager"]
    em.send_signal(19)  # SIGSTOP: the person acts while the exit manager is not looking
    try:
        person = _client(s)
        for lg in s.state().position.legs:
            if lg.list_client_id:
                person.cancel_order_list("BTCUSDC", list_client_order_id=lg.list_client_id)
            else:
                person.cancel_order("BTCUSDC", client_order_id=lg.stop_client_id)
        free = person.account()["BTC"][0]
        sell = (free // Decimal("0.00001")) * Decimal("0.00001")
        person.place_order("BTCUSDC", "SELL", "MARKET", sell, client_order_id="by-hand-1")
    finally:
        em.send_signal(18)  # SIGCONT
    wait_closed(s)
    st = s.state()
    assert st.last_closed.exit_reason == "manual"
    assert_closed(s, pos.trade_key, "manual")
    ours = [o for o in trade_orders(s, pos.trade_key) if o["side"] == "SELL" and Decimal(o["executedQty"]) > 0]
    assert ours == [], "the exit manager sold coins a person had already sold"
    assert any(a["event"] == "manual_close" for a in alerts(s, pos.trade_key))
    assert events(s, "manual_close_detected", pos.trade_key)


def _wallet_base_net(s: Stack, margin: str = "cross") -> Decimal:
    from services.exit_manager.holdings import base_net
    return base_net(_client(s, margin=margin), "BTCUSDC", "BTC")


def test_manual_buy_back_of_a_short_on_margin(make):
    """A person buys the short back by hand without touching our orders (a margin buy needs none of our coins):
    the wallet's base net says the coins came back, the account's own trade proves it, our resting buys are
    cancelled before they could buy a second time, the trade is booked `manual` and the borrow repaid."""
    s = make(**MARGIN)
    pos = open_long(s, side="short")
    wait_event(s, "wallet_baseline")
    person = _client(s, margin="cross")
    person.place_order("BTCUSDC", "BUY", "MARKET", pos.exit_qty, client_order_id="by-hand-1",
                       side_effect_type="NO_SIDE_EFFECT")
    wait_closed(s)
    st = s.state()
    assert st.last_closed.exit_reason == "manual", st.last_closed
    assert s.open_orders() == [], "an order of the trade is still resting"
    ours = [o for o in trade_orders(s, pos.trade_key) if o["side"] == "BUY" and Decimal(o["executedQty"]) > 0]
    assert ours == [], "the exit manager bought back what a person had already bought"
    assert st.last_closed.qty <= pos.exit_qty and st.last_closed.qty >= pos.exit_qty - STEP_QTY
    found = events(s, "manual_close_detected", pos.trade_key)
    assert found and found[-1].data["side"] == "short"
    assert any(a["event"] == "manual_close" for a in alerts(s, pos.trade_key))
    debts = _client(s, margin="cross").margin_debts("BTCUSDC")
    assert debts.get("BTC", Decimal(0)) == 0, debts


def test_partial_manual_buy_back_of_a_short_keeps_the_rest_protected(make):
    """Half bought back by hand: that half is booked `manual`, the legs are placed again for what is still short
    (the stops cover exactly that), and the rest leaves by its stop."""
    s = make(**MARGIN)
    pos = open_long(s, side="short")
    wait_event(s, "wallet_baseline")
    half = (pos.exit_qty / 2 // STEP_QTY) * STEP_QTY
    _client(s, margin="cross").place_order("BTCUSDC", "BUY", "MARKET", half, client_order_id="by-hand-2",
                                           side_effect_type="NO_SIDE_EFFECT")
    wait_event(s, "manual_close_detected")
    s.wait(lambda: all(lg.status in ("PLACED", "DONE") for lg in s.state().position.legs)
           and any(lg.attempt > 0 and lg.status == "PLACED" for lg in s.state().position.legs), 20,
           "legs placed again for the rest")
    p = s.state().position
    booked = sum(lg.filled_qty for lg in p.legs if lg.exit_reason == "manual")
    assert half - STEP_QTY <= booked <= half
    resting = sum(Decimal(o["origQty"]) for o in s.open_orders() if o["type"] == "STOP_LOSS_LIMIT")
    assert resting == p.exit_qty - booked, (resting, p.exit_qty, booked)
    price(s, max(lg.stop_price for lg in p.legs))
    wait_closed(s)
    assert s.open_orders() == []
    bought_by_us = sum(Decimal(o["executedQty"]) for o in trade_orders(s, pos.trade_key) if o["side"] == "BUY")
    assert bought_by_us == p.exit_qty - booked


def test_manual_close_of_a_long_on_isolated_margin(make):
    """Isolated margin, auto borrow: a person cancels our orders and sells by hand. The exits' sells use
    AUTO_REPAY, so the re-placement cannot borrow the missing coins (an accidental short); the trade is booked
    `manual` and nothing of ours sold."""
    s = make(**ISOLATED_AUTO)
    pos = open_long(s)
    wait_event(s, "wallet_baseline")
    em = s.procs["exit_manager"]
    em.send_signal(19)  # SIGSTOP: the person acts while the exit manager is not looking
    try:
        person = _client(s, margin="isolated")
        for lg in s.state().position.legs:
            if lg.list_client_id:
                person.cancel_order_list("BTCUSDC", list_client_order_id=lg.list_client_id)
            else:
                person.cancel_order("BTCUSDC", client_order_id=lg.stop_client_id)
        person.place_order("BTCUSDC", "SELL", "MARKET", (pos.exit_qty // STEP_QTY) * STEP_QTY, client_order_id="by-hand-3",
                           side_effect_type="AUTO_REPAY")
    finally:
        em.send_signal(18)  # SIGCONT
    wait_closed(s)
    assert s.state().last_closed.exit_reason == "manual"
    assert s.open_orders() == []
    ours = [o for o in trade_orders(s, pos.trade_key) if o["side"] == "SELL" and Decimal(o["executedQty"]) > 0]
    assert ours == [], "the exit manager sold coins a person had already sold"
    assert _wallet_base_net(s, "isolated") >= 0, "an exit borrowed the base asset: the long became a short"


def _client(s: Stack, margin: str | None = None):
    from shared.adapters.binance_rest import BinanceClient
    return BinanceClient(s.env["BINANCE_BASE_URL"], s.env["BINANCE_API_KEY"], s.env["BINANCE_API_SECRET"],
                         margin=margin)


def test_short_exit_buys_cover_their_commission_no_debt_left(make):
    """Cross margin, manual borrow: the exit buys are grossed up for the commission taken in BTC, so the whole
    borrow is repaid from what they received (before, ~fee x qty of BTC stayed borrowed)."""
    s = make(**MARGIN)
    pos = open_long(s, side="short")
    assert pos.margin_borrowed > 0 and pos.margin_borrow_asset == "BTC"
    rate = Decimal(str(events(s, "exit_fee_rate")[-1].data["rate"]))
    assert rate > 0
    assert pos.exit_qty > pos.filled_qty and sum(lg.qty for lg in pos.legs) == pos.exit_qty
    price(s, pos.tp1 - TICK)  # tp1 fills (a maker buy), then the rest at break-even (taker buys)
    wait_event(s, "break_even_done")
    s.wait(lambda: all(lg.status in ("PLACED", "DONE") for lg in s.state().position.legs), 10, "moves done")
    price(s, leg(s, "trail").stop_price)
    wait_closed(s)
    assert_closed(s, pos.trade_key, "stop")
    debts = _client(s, margin="cross").margin_debts("BTCUSDC")
    assert debts.get("BTC", Decimal(0)) == 0 and debts.get("USDC", Decimal(0)) == 0, debts
    repaid = events(s, "margin_repaid", pos.trade_key)[-1]
    assert Decimal(str(repaid.data["debt_left"])) == 0
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty, "short")


@pytest.mark.parametrize("side", SIDES)
def test_partial_take_profit_fill_gets_a_new_stop(make, side):
    s, side = make_side(make, side, PAPER_PARTIAL_FILL_RATIO="0.5")
    pos = open_long(s, side=side)
    tp1 = leg(s, "tp1")
    sign = 1 if side == "long" else -1
    price(s, pos.tp1 + sign * TICK)  # the take-profit fills half; the exchange expires the OCO's stop
    settle()
    price(s, pos.tp1 - sign * TICK * 100)  # back short of it: the rest of tp1 needs a stop again
    ev = wait_event(s, "leg_reprotect", leg="tp1")
    s.wait(lambda: leg(s, "tp1").attempt == 1 and leg(s, "tp1").status == "PLACED", 10, "tp1 re-protected")
    new = leg(s, "tp1")
    assert new.filled_qty == Decimal(str(ev.data["filled"])) > 0
    opened = {o["clientOrderId"]: o for o in s.open_orders()}
    assert Decimal(opened[new.stop_client_id]["origQty"]) == tp1.qty - new.filled_qty
    # the break-even after a partial take-profit is not due yet: close everything at the stop
    price(s, leg(s, "tp1").stop_price)
    wait_closed(s)
    assert_closed(s, pos.trade_key, "stop")
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty, side)
    closed = events(s, "position_closed", pos.trade_key)[-1]
    if side == "long":  # the entry fee's part of a step
        assert Decimal(0) < Decimal(str(closed.data["dust"])) < Decimal("0.00001")
    else:  # a short's legs buy exactly the grossed-up total in whole steps
        assert Decimal(str(closed.data["dust"])) == 0


@pytest.mark.parametrize("side", SIDES)
def test_gap_through_the_stop_limit_closes_at_market(make, side):
    s, side = make_side(make, side, SL_WATCHDOG_GRACE_SEC="0")   # the market time stands still here: no grace
    pos = open_long(s, side=side)
    jump = -TICK * 500 if side == "long" else TICK * 500
    price(s, pos.sl + jump, gap=True)  # a jump far through the stops' limits: they trigger and rest
    assert wait_event(s, "stop_gapped").data["passed_sec"] == 0
    wait_closed(s)
    assert_closed(s, pos.trade_key, "flatten:stop_gapped")
    assert events(s, "flatten_filled", pos.trade_key)
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty, side)


@pytest.mark.parametrize("side", SIDES)
def test_stop_would_trigger_at_placement_flattens(make, side):
    s, side = make_side(make, side, exit_manager=False)
    pos = open_long(s, legs_resting=False, side=side)
    price(s, pos.sl + (-TICK if side == "long" else TICK))  # while nobody protects it
    restart_exit_manager(s)
    ev = wait_event(s, "leg_would_trigger")
    assert ev.data["reason"] == "stop_immediate" and "flatten" in ev.data["action"]
    wait_closed(s)
    assert_closed(s, pos.trade_key, "flatten:stop_immediate")
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty, side)


@pytest.mark.parametrize("side", SIDES)
def test_stop_would_trigger_at_placement_nearest(make, side):
    """STOP_IMMEDIATE_ACTION=nearest: the stops go one tick beyond the bid (long) / ask (short) instead of a
    market close."""
    s, side = make_side(make, side, exit_manager=False, STOP_IMMEDIATE_ACTION="nearest")
    pos = open_long(s, legs_resting=False, side=side)
    sign = 1 if side == "long" else -1
    price(s, pos.sl - sign * TICK * 30)  # while nobody protects it
    restart_exit_manager(s)
    ev = wait_event(s, "leg_would_trigger")
    assert ev.data["reason"] == "stop_immediate" and "nearest" in ev.data["action"]
    to = Decimal(str(ev.data["stop_to"]))
    assert to == Decimal(str(ev.data["market"])) - sign * TICK and sign * (pos.sl - to) > 0
    s.wait(lambda: legs_placed(s), 20, "three legs resting at the nearest stop")
    assert not events(s, "flatten_requested", pos.trade_key)
    resting = {o["clientOrderId"]: o for o in s.open_orders()}
    for lg in s.state().position.legs:
        assert sign * (pos.sl - lg.stop_price) > 0
        assert Decimal(resting[lg.stop_client_id]["stopPrice"]) == lg.stop_price
    stops = [lg.stop_price for lg in s.state().position.legs]
    price(s, min(stops) if side == "long" else max(stops))
    wait_closed(s)
    assert_closed(s, pos.trade_key, "stop")
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty, side)


@pytest.mark.parametrize("side", SIDES)
def test_exits_rejected_until_failsafe_flatten(make, side):
    s, side = make_side(make, side, FAILSAFE_FLATTEN="true", FAILSAFE_EXITS_MAX_TRIES="3", EXITS_RETRY_EVERY_SEC="5",
                   FAILSAFE_EXITS_GRACE_SEC="40")
    oco = "/sapi/v1/margin/order/oco" if s.env.get("TRADE_MODE") == "margin" else "/api/v3/orderList/oco"
    s.admin("/faults", {"reject_orders": -1, "path": oco})
    pos = open_long(s, legs_resting=False, side=side)
    wait_event(s, "leg_rejected")
    for _ in range(8):  # each point is 15 market seconds: a retry is due after each
        if s.state().position is None or s.state().position.flatten_requested:
            break
        s.admin("/advance", {"points": 1})
        settle()
    wait_closed(s)
    assert_closed(s, pos.trade_key, "flatten:failsafe")
    rejected = events(s, "leg_rejected", pos.trade_key)
    assert len(rejected) >= 3
    # 3 tries were reached at the third round (a round every 15 market s), but the flatten waited for the 40 s
    # grace since the first refusal: the rounds at 0, 15, 30 s did not flatten, the one at 45 s did
    assert max(e.data["tries"] for e in rejected) >= 4, [e.data["tries"] for e in rejected]
    assert any(a["event"] == "flatten" for a in alerts(s, pos.trade_key))
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty, side)
