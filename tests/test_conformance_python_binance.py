"""Conformance: `python-binance` (sorted parameters, POST/DELETE as a form body) against the paper exchange.

python-binance signs its parameters sorted by name and sends signed GETs in the query string and
POST/DELETE parameters in the form body — a different byte layout from the official SDK (everything in the
query string, in the caller's order). Both must be accepted because the exchange checks the HMAC over the
bytes it received, and both must get Binance's codes back.
"""
from __future__ import annotations

import pytest
from binance.client import Client

from tests.conformance_helpers import (  # noqa: F401  (pytest fixtures)
    KEY, SYMBOL, D, _clean_book, exchange, pyb, pyb_error,
)

Q = "0.00100"


def test_place_query_cancel_open_orders(pyb):
    o = pyb.create_order(symbol=SYMBOL, side="BUY", type="LIMIT", timeInForce="GTC", quantity=Q,
                         price="59000.00", newClientOrderId="pyb-l1")
    assert o["status"] == "NEW" and o["clientOrderId"] == "pyb-l1" and o["fills"] == []
    by_id = pyb.get_order(symbol=SYMBOL, orderId=o["orderId"])
    by_cid = pyb.get_order(symbol=SYMBOL, origClientOrderId="pyb-l1")
    assert by_id == by_cid and by_id["status"] == "NEW" and D(by_id["price"]) == 59000
    assert [x["orderId"] for x in pyb.get_open_orders(symbol=SYMBOL)] == [o["orderId"]]
    c = pyb.cancel_order(symbol=SYMBOL, origClientOrderId="pyb-l1")  # DELETE with a form body
    assert c["status"] == "CANCELED" and c["origClientOrderId"] == "pyb-l1"
    assert pyb.get_open_orders(symbol=SYMBOL) == []
    # Rate-limit headers on the last reply.
    h = pyb.response.headers
    assert int(h["X-MBX-USED-WEIGHT-1M"]) > 0


def test_python_binance_default_client_ids_are_accepted(pyb):
    o = pyb.order_limit_buy(symbol=SYMBOL, quantity=Q, price="58000.00")  # x-HNA2TXFJ + 22 hex chars
    assert o["clientOrderId"].startswith(Client.SPOT_ORDER_PREFIX) and o["status"] == "NEW"


def test_market_account_and_my_trades(pyb):
    before = {b["asset"]: D(b["free"]) for b in pyb.get_account()["balances"]}
    o = pyb.order_market_buy(symbol=SYMBOL, quantity=Q)
    assert o["status"] == "FILLED" and len(o["fills"]) == 1
    trades = pyb.get_my_trades(symbol=SYMBOL, orderId=o["orderId"])
    assert [t["orderId"] for t in trades] == [o["orderId"]] and trades[0]["isBuyer"] is True
    after = {b["asset"]: D(b["free"]) for b in pyb.get_account()["balances"]}
    assert after["BTC"] - before["BTC"] == D(Q) - D(o["fills"][0]["commission"])


def test_oco_order_list(pyb):
    lst = pyb.create_oco_order(symbol=SYMBOL, side="SELL", quantity=Q, listClientOrderId="pyb-oco",
                               aboveType="LIMIT_MAKER", abovePrice="61000.00",
                               belowType="STOP_LOSS_LIMIT", belowStopPrice="59000.00", belowPrice="58900.00",
                               belowTimeInForce="GTC")
    assert lst["contingencyType"] == "OCO" and len(lst["orderReports"]) == 2
    got = pyb.v3_get_order_list(orderListId=lst["orderListId"])
    assert got["listClientOrderId"] == "pyb-oco" and got["listOrderStatus"] == "EXECUTING"
    gone = pyb.v3_delete_order_list(symbol=SYMBOL, listClientOrderId="pyb-oco")  # DELETE, form body
    assert gone["listOrderStatus"] == "ALL_DONE" and {r["status"] for r in gone["orderReports"]} == {"CANCELED"}


def test_cancel_replace(pyb):
    o = pyb.create_order(symbol=SYMBOL, side="BUY", type="LIMIT", timeInForce="GTC", quantity=Q,
                         price="59000.00", newClientOrderId="pyb-cr1")
    r = pyb.cancel_replace_order(symbol=SYMBOL, side="BUY", type="LIMIT", timeInForce="GTC", quantity=Q,
                                 price="59050.00", cancelReplaceMode="STOP_ON_FAILURE",
                                 cancelOrderId=o["orderId"], newClientOrderId="pyb-cr2")
    assert (r["cancelResult"], r["newOrderResult"]) == ("SUCCESS", "SUCCESS")
    e = pyb_error(lambda: pyb.cancel_replace_order(
        symbol=SYMBOL, side="BUY", type="LIMIT", timeInForce="GTC", quantity=Q, price="59050.00",
        cancelReplaceMode="STOP_ON_FAILURE", cancelOrigClientOrderId="no-such-order"))
    assert (e.status_code, e.code, e.message) == (400, -2022, "Order cancel-replace failed.")
    data = e.response.json()["data"]
    assert data["cancelResult"] == "FAILURE" and data["newOrderResult"] == "NOT_ATTEMPTED"
    assert data["cancelResponse"] == {"code": -2011, "msg": "Unknown order sent."}


def test_margin_borrow_order_repay(pyb):
    acct = pyb.get_margin_account()
    before = {a["asset"]: D(a["borrowed"]) for a in acct["userAssets"]}
    t = pyb.margin_borrow_repay(asset="BTC", amount="0.01", isIsolated="FALSE", type="BORROW")
    assert isinstance(t["tranId"], int)
    o = pyb.create_margin_order(symbol=SYMBOL, side="SELL", type="LIMIT", timeInForce="GTC", quantity=Q,
                                price="61000.00", sideEffectType="NO_SIDE_EFFECT", newClientOrderId="pyb-m1")
    assert o["status"] == "NEW" and o["isIsolated"] is False
    assert pyb.get_margin_order(symbol=SYMBOL, origClientOrderId="pyb-m1")["orderId"] == o["orderId"]
    c = pyb.cancel_margin_order(symbol=SYMBOL, orderId=o["orderId"])
    assert c["status"] == "CANCELED"
    s = pyb.create_margin_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity="0.01000",
                                sideEffectType="AUTO_REPAY")
    assert s["status"] == "FILLED"
    after = {a["asset"]: D(a["borrowed"]) for a in pyb.get_margin_account()["userAssets"]}
    assert after["BTC"] == before["BTC"]  # AUTO_REPAY paid the BTC loan back after the fill


# ---- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("price, qty, msg", [
    ("59000.005", Q, "Filter failure: PRICE_FILTER"),
    ("59000.00", "0.0010005", "Filter failure: LOT_SIZE"),
    ("100.00", Q, "Filter failure: NOTIONAL"),
])
def test_filter_failures(pyb, price, qty, msg):
    e = pyb_error(lambda: pyb.create_order(symbol=SYMBOL, side="BUY", type="LIMIT", timeInForce="GTC",
                                           quantity=qty, price=price))
    assert (e.status_code, e.code, e.message) == (400, -1013, msg)


def test_rejections_and_unknown_orders(pyb):
    e = pyb_error(lambda: pyb.order_limit_buy(symbol=SYMBOL, quantity="100", price="59000.00"))
    assert (e.status_code, e.code, e.message) == (400, -2010, "Account has insufficient balance for requested action.")
    e = pyb_error(lambda: pyb.create_order(symbol=SYMBOL, side="SELL", type="STOP_LOSS_LIMIT", timeInForce="GTC",
                                           quantity=Q, price="60500.00", stopPrice="60500.00"))
    assert (e.code, e.message) == (-2010, "Stop price would trigger immediately.")
    e = pyb_error(lambda: pyb.create_order(symbol=SYMBOL, side="BUY", type="LIMIT_MAKER", quantity=Q,
                                           price="60100.00"))
    assert (e.code, e.message) == (-2010, "Order would immediately match and take.")
    e = pyb_error(lambda: pyb.cancel_order(symbol=SYMBOL, orderId=99999999))
    assert (e.status_code, e.code, e.message) == (400, -2011, "Unknown order sent.")
    e = pyb_error(lambda: pyb.get_order(symbol=SYMBOL, orderId=99999999))
    assert (e.status_code, e.code, e.message) == (400, -2013, "Order does not exist.")


def test_auth_errors(exchange):
    bad = Client(KEY, "wrong-secret", ping=False)
    bad.API_URL = exchange.url + "/api"
    e = pyb_error(lambda: bad.get_account())
    assert (e.status_code, e.code, e.message) == (400, -1022, "Signature for this request is not valid.")
    bad.close_connection()

    late = Client(KEY, "test-secret-456", ping=False)
    late.API_URL = exchange.url + "/api"
    late.timestamp_offset = -15_000  # python-binance's own clock-offset knob: the request is 15 s old (its default
    # recvWindow is 10 s: at exactly 10 s the outcome depended on the millisecond)
    e = pyb_error(lambda: late.get_account())
    assert (e.status_code, e.code, e.message) == (
        400, -1021, "Timestamp for this request is outside of the recvWindow.")
    late.REQUEST_RECVWINDOW = 30_000
    assert late.get_account()["accountType"] == "SPOT"
    late.close_connection()
