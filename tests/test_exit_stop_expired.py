"""A stop leg the exchange expires (price range execution rule, self-trade prevention) is a leg without a stop: the
exit manager says so (`stop_expired` event + alert) and places the leg again, or flattens when the market is
already past the stop. Real processes, real Redis, the paper exchange (PAPER_SPEED=0)."""
from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from shared.adapters.binance_rest import BinanceClient
from shared.adapters.redis_streams import publish
from shared.domain.commands import new_command
from shared.domain.exit_decide import expired_stop
from tests.test_exit_manager_support import (  # noqa: F401 - make is a fixture
    make,
    alerts,
    assert_closed,
    assert_no_duplicates,
    leg,
    open_long,
    price,
    trade_orders,
    wait_closed,
    wait_event,
)

TICK = Decimal("0.01")
STEP_QTY = Decimal("0.00001")


def test_expired_stop_is_replaced_while_the_market_is_above_it_else_flattened():
    stop = Decimal("100.00")
    assert expired_stop("long", stop, Decimal("100.01")) == "replace"
    assert expired_stop("long", stop, stop) == "flatten"
    assert expired_stop("long", stop, Decimal("99.99")) == "flatten"
    assert expired_stop("short", stop, Decimal("99.99")) == "replace"
    assert expired_stop("short", stop, Decimal("100.01")) == "flatten"
    assert expired_stop("long", stop, None) == "replace"   # unknown market: the placement's own check decides


def test_a_stop_leg_expired_by_the_price_range_rule_gets_a_new_stop_and_an_alert(make):
    s = make()
    pos = open_long(s)
    old = leg(s, "tp1")
    s.admin("/expire", {"client_order_id": old.stop_client_id})   # default reason: the price range rule
    ev = wait_event(s, "stop_expired", leg="tp1")
    assert ev.trade_key == pos.trade_key and ev.data["action"] == "replace"
    assert ev.data["expiry_reason"] == "EXECUTION_RULE_PRICE_RANGE_EXCEEDED"

    def replaced():
        lg = leg(s, "tp1")
        if lg.status != "PLACED" or lg.attempt <= old.attempt:
            return None
        return next((o for o in s.open_orders() if o["clientOrderId"] == lg.stop_client_id), None)
    new_stop = s.wait(replaced, 20, "a new stop resting for tp1")
    assert Decimal(new_stop["origQty"]) == old.qty and Decimal(new_stop["stopPrice"]) == old.stop_price
    got = [a for a in alerts(s, pos.trade_key) if a["event"] == "stop_expired"]
    assert got and got[0]["severity"] == "WARN" and "EXECUTION_RULE_PRICE_RANGE_EXCEEDED" in got[0]["message"]
    assert s.state().position.flatten_requested == ""


def _flatten_command(s) -> None:
    """XADD a `flatten` command for the current trade, as executorctl writes it."""
    raw = s.r.get(f"{s.prefix}clock")
    now = int(raw) / 1000 if raw is not None else time.time()
    cmd = new_command("flatten", now, 60, "pytest", "test", s.state().position.trade_key)
    publish(s.r, f"{s.prefix}commands", cmd, 10_000)


def test_our_own_buy_expires_the_take_profit_in_match_then_the_flatten_sells_every_coin_once(make):
    """Self-trade prevention: an order of ours on the other side would take our resting take-profit; the exchange
    expires it EXPIRED_IN_MATCH and its OCO stop with it. The leg is placed again, and the flatten that
    follows sells the position's coins, each once, with the result booked from the exchange's fills."""
    s = make()
    pos = open_long(s)
    tp1 = leg(s, "tp1")
    price(s, tp1.tp_price - TICK)            # bid one tick under the take-profit, ask on it: it rests unfilled
    assert leg(s, "tp1").status == "PLACED"
    c = BinanceClient(s.env["BINANCE_BASE_URL"], s.env["BINANCE_API_KEY"], s.env["BINANCE_API_SECRET"])
    # EXPIRE_BOTH: our taker expires too, so the account holds only the position's coins (the check below is exact)
    raw = c._request("POST", "/api/v3/order", {"symbol": s.env.get("SYMBOL", "BTCUSDC"), "side": "BUY",
                     "type": "MARKET", "quantity": tp1.qty, "newClientOrderId": "pytest-other-side",
                     "selfTradePreventionMode": "EXPIRE_BOTH", "newOrderRespType": "FULL"}, signed=True)
    assert json.loads(raw)["status"] == "EXPIRED_IN_MATCH"
    tp = next(o for o in s.orders() if o["clientOrderId"] == tp1.tp_client_id)
    assert tp["status"] == "EXPIRED_IN_MATCH", tp
    ev = wait_event(s, "stop_expired", leg="tp1")
    assert ev.data["expiry_reason"] == "EXPIRED_IN_MATCH" and ev.data["action"] == "replace"
    s.wait(lambda: leg(s, "tp1").status == "PLACED" and leg(s, "tp1").attempt > tp1.attempt, 20, "tp1 placed again")
    _flatten_command(s)
    wait_closed(s)
    assert_closed(s, pos.trade_key, "flatten:operator")   # the booked result equals the exchange's fills
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)
    sold = sum((Decimal(o["executedQty"]) for o in trade_orders(s, pos.trade_key) if o["side"] == "SELL"), Decimal(0))
    assert pos.filled_qty - sold < STEP_QTY * 2    # nothing of the position left unsold beyond the commission's dust


@pytest.mark.parametrize("partial", [False, True], ids=["unfilled", "partially-filled"])
def test_a_take_profit_expired_in_match_during_the_flatten_counts_as_unfilled_and_the_rest_is_sold_once(make, partial):
    """Issue 22's done-when: EXPIRED_IN_MATCH on a take-profit DURING a flatten. Our own flatten never self-trades
    with our take-profit (both sell for a long, and the flatten cancels them first), so the expiry comes from an
    opposite-side order of the same account (an operator's manual buy) sent while the flatten runs: the paper
    exchange's real self-trade prevention path, not the admin expire endpoint, so the records (EXPIRED_IN_MATCH,
    preventedMatchId, the OCO stop expired with it) are the exchange's own. To be sure it lands inside the flatten
    (after the flatten listed the open orders, before it cancels tp1), the flatten's first order-list cancel is held
    by an injected latency; the buy goes in while that request sleeps. EXPIRE_BOTH expires the buy too, so the
    account holds only the position's coins and "sold exactly what was held" is exact. `partially-filled`: the
    take-profit had sold part of the leg before (PAPER_PARTIAL_FILL_RATIO), so the expired order carries fills
    the flatten must count, and sell only the rest."""
    s = make(**({"PAPER_PARTIAL_FILL_RATIO": "0.5"} if partial else {}))
    pos = open_long(s)
    tp1 = leg(s, "tp1")
    if partial:   # traded through once: half the take-profit fills, its OCO stop expires; the rest rests on
        price(s, tp1.tp_price + TICK)
        s.wait(lambda: any(o["clientOrderId"] == tp1.tp_client_id and o["status"] == "PARTIALLY_FILLED"
                           for o in s.open_orders()), 20, "tp1 partially filled and resting")
    else:
        price(s, tp1.tp_price - TICK)        # bid one tick under the take-profit, ask on it: it rests unfilled
        assert leg(s, "tp1").status == "PLACED"
    s.admin("/faults", {"latency_ms": 2500, "count": 1, "path": "/api/v3/orderList"})
    _flatten_command(s)
    # the latency is taken when the flatten's first cancel arrives; that request then sleeps before it executes
    s.wait(lambda: not s.admin("/faults")["faults"], 20, "the flatten's first order-list cancel held")
    assert s.state().position.flatten_requested == "operator"
    c = BinanceClient(s.env["BINANCE_BASE_URL"], s.env["BINANCE_API_KEY"], s.env["BINANCE_API_SECRET"])
    raw = c._request("POST", "/api/v3/order", {"symbol": s.env.get("SYMBOL", "BTCUSDC"), "side": "BUY",
                     "type": "MARKET", "quantity": tp1.qty, "newClientOrderId": "pytest-other-side",
                     "selfTradePreventionMode": "EXPIRE_BOTH", "newOrderRespType": "FULL"}, signed=True)
    assert json.loads(raw)["status"] == "EXPIRED_IN_MATCH"
    wait_closed(s)
    by_id = {o["clientOrderId"]: o for o in s.orders()}
    tp = by_id[tp1.tp_client_id]
    tp_sold = Decimal(tp["executedQty"])
    assert tp["status"] == "EXPIRED_IN_MATCH" and (tp_sold > 0) is partial and tp_sold < tp1.qty, tp
    assert by_id[tp1.stop_client_id]["status"] == "EXPIRED", by_id[tp1.stop_client_id]
    assert_closed(s, pos.trade_key, "flatten:operator")   # the booked result equals the exchange's fills
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)
    lc = s.state().last_closed
    assert next(lg for lg in lc.legs if lg.name == "tp1").filled_qty == tp_sold   # only what the exchange filled
    sells = [o for o in trade_orders(s, pos.trade_key) if o["side"] == "SELL" and Decimal(o["executedQty"]) > 0]
    market = [o for o in sells if o["type"] == "MARKET"]
    assert len(market) == 1 and len(sells) == 1 + partial, sells   # the flatten (and the partial take-profit) only
    held = pos.filled_qty - pos.entry_fee_base
    assert Decimal(market[0]["executedQty"]) == lc.qty - tp_sold and lc.qty <= held   # never more than held...
    assert held - lc.qty < STEP_QTY                                                    # ...no whole step left


def test_an_expired_stop_whose_replacement_is_refused_is_flattened_after_sl_watchdog_retry_sec(make):
    """A leg whose stop the exchange expired and whose new stop the exchange refuses holds coins without a stop:
    it is tried again after SL_WATCHDOG_RETRY_SEC (not EXITS_RETRY_EVERY_SEC), and refused still once that window
    is over, the position is flattened with a CRITICAL alert, FAILSAFE_FLATTEN being off (the default)."""
    s = make(SL_WATCHDOG_RETRY_SEC="5", EXITS_RETRY_EVERY_SEC="60")
    pos = open_long(s)
    old = leg(s, "tp1")
    s.admin("/faults", {"reject_orders": -1, "path": "/api/v3/orderList/oco"})   # every new OCO refused
    s.admin("/expire", {"client_order_id": old.stop_client_id})
    assert wait_event(s, "stop_expired", leg="tp1").data["action"] == "replace"
    rej = wait_event(s, "leg_rejected", leg="tp1")
    assert rej.data["retry_in"] == 5 and rej.data["stop_lost_at"], rej.data
    lost = leg(s, "tp1")
    assert lost.status == "NEW" and lost.stop_lost_at > 0 and lost.stop_lost_refusals == 1
    assert s.state().position.flatten_requested == ""    # the market time stands still: within the window
    s.admin("/advance", {"points": 1})                    # 15 market seconds: the retry is due, and refused again
    ev = wait_event(s, "stop_lost_flatten", leg="tp1")
    assert ev.data["refusals"] >= 2 and Decimal(str(ev.data["unprotected_sec"])) >= 5
    wait_closed(s)
    s.admin("/faults", {"clear": True})
    assert_closed(s, pos.trade_key, "flatten:stop_expired")
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)
    got = [a for a in alerts(s, pos.trade_key) if a["event"] == "stop_expired" and a["severity"] == "CRITICAL"]
    assert got and "refused a new one" in got[0]["message"], got
