"""A stop leg the exchange expires (price range execution rule, self-trade prevention) is a leg without a stop: the
exit manager says so (`stop_expired` event + alert) and places the leg again, or flattens when the market is
already past the stop. Real processes, real Redis, the paper exchange (PAPER_SPEED=0)."""
from __future__ import annotations

from decimal import Decimal

from shared.domain.exit_decide import expired_stop
from tests.test_exit_manager_support import (  # noqa: F401 - make is a fixture
    make,
    alerts,
    leg,
    open_long,
    wait_event,
)


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
