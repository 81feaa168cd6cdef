"""OCO order lists on the paper exchange: one lock for both legs, the sibling expires."""
from __future__ import annotations

from decimal import Decimal

import pytest

from shared.adapters.binance_rest import Rejected

from tests.pe_helpers import SYMBOL, pe  # noqa: F401  (pytest fixture: a real paper exchange)

QTY = Decimal("0.2")


def _sell_oco(c, last, tag="o"):
    return c.place_oco(SYMBOL, "SELL", QTY, above_type="LIMIT_MAKER", above_price=last + 200,
                       below_type="STOP_LOSS_LIMIT", below_stop_price=last - 100, below_price=last - 110,
                       below_time_in_force="GTC", list_client_order_id=f"{tag}-list",
                       above_client_order_id=f"{tag}-tp", below_client_order_id=f"{tag}-sl")


def test_oco_locks_quantity_once(pe):
    c = pe.client()
    lst = _sell_oco(c, pe.last())
    assert lst.list_status_type == "EXEC_STARTED" and len(lst.order_reports) == 2
    assert {o.client_order_id for o in lst.orders} == {"o-tp", "o-sl"}
    assert c.account()["BTC"] == (Decimal("0.3"), QTY)
    with pytest.raises(Rejected) as ei:  # 0.3 free: a second 0.2 OCO fits, a 0.4 SELL does not
        c.place_order(SYMBOL, "SELL", "LIMIT", Decimal("0.4"), price=pe.last() + 500, time_in_force="GTC",
                      client_order_id="too-much")
    assert ei.value.code == -2010


def test_sibling_expires_when_the_stop_triggers(pe):
    c = pe.client()
    last = pe.last()
    _sell_oco(c, last)
    pe.price(last - 105)  # triggers the stop; the bid is above its limit, so it fills as taker
    sl, tp = pe.order("o-sl"), pe.order("o-tp")
    assert (sl["status"], tp["status"]) == ("FILLED", "EXPIRED")
    lst = c.get_order_list(list_client_order_id="o-list")
    assert (lst.list_status_type, lst.list_order_status) == ("ALL_DONE", "ALL_DONE")
    btc_free, btc_locked = c.account()["BTC"]
    assert (btc_free, btc_locked) == (Decimal("0.3"), Decimal(0))


def test_sibling_expires_when_the_stop_triggers_but_gaps(pe):
    c = pe.client()
    last = pe.last()
    _sell_oco(c, last)
    pe.price(last - 150, gap=True)  # gapped through the limit: the stop leg rests, the take-profit is gone
    sl, tp = pe.order("o-sl"), pe.order("o-tp")
    assert (sl["status"], sl["isWorking"], tp["status"]) == ("NEW", True, "EXPIRED")
    assert c.account()["BTC"][1] == QTY  # the working stop still holds the lock


def test_sibling_expires_when_the_limit_fills(pe):
    c = pe.client()
    last = pe.last()
    _sell_oco(c, last)
    pe.price(last + 200)
    assert pe.order("o-tp")["status"] == "NEW"  # touched, not traded through
    pe.price(last + 201)
    sl, tp = pe.order("o-sl"), pe.order("o-tp")
    assert (tp["status"], sl["status"]) == ("FILLED", "EXPIRED")
    assert tp["fills"][0]["price"] == f"{last + 200:.8f}"
    usdc_free = c.account()["USDC"][0]
    assert usdc_free == Decimal(10000) + (last + 200) * QTY * Decimal("0.999")


def test_cancel_order_list_and_leg(pe):
    c = pe.client()
    last = pe.last()
    _sell_oco(c, last, "a")
    cancelled = c.cancel_order_list(SYMBOL, list_client_order_id="a-list")
    assert {o.status for o in cancelled.order_reports} == {"CANCELED"}
    assert c.account()["BTC"] == (Decimal("0.5"), Decimal(0))
    _sell_oco(c, last, "b")
    c.cancel_order(SYMBOL, client_order_id="b-tp")  # cancelling one leg cancels the list
    assert pe.order("b-sl")["status"] == "CANCELED"
    assert c.open_orders(SYMBOL) == []


def test_buy_oco_and_price_relationship(pe):
    c = pe.client()
    last = pe.last()
    with pytest.raises(Rejected) as ei:
        c.place_oco(SYMBOL, "BUY", Decimal("0.01"), above_type="STOP_LOSS_LIMIT", above_stop_price=last - 5,
                    above_price=last + 10, above_time_in_force="GTC", below_type="LIMIT_MAKER",
                    below_price=last - 100, list_client_order_id="bl", above_client_order_id="ba",
                    below_client_order_id="bb")
    assert ei.value.code == -2010
    lst = c.place_oco(SYMBOL, "BUY", Decimal("0.01"), above_type="STOP_LOSS_LIMIT", above_stop_price=last + 100,
                      above_price=last + 110, above_time_in_force="GTC", below_type="LIMIT_MAKER",
                      below_price=last - 100, list_client_order_id="bl", above_client_order_id="ba",
                      below_client_order_id="bb")
    assert lst.order_list_id > 0
    assert c.account()["USDC"][1] == (last + 110) * Decimal("0.01")  # the dearer leg, once
    pe.price(last - 101)
    assert (pe.order("bb")["status"], pe.order("ba")["status"]) == ("FILLED", "EXPIRED")
    assert c.account()["USDC"][1] == 0
