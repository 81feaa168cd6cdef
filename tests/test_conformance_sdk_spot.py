"""Conformance: Binance's official `binance-sdk-spot` against the paper exchange process.

Every reply must parse strictly into the SDK's models (`sdk_data`), and every error must come back with the
HTTP status, code and message Binance documents.
"""
from __future__ import annotations

import time
from decimal import Decimal

import pytest
from binance_common.configuration import ConfigurationRestAPI
from binance_common.errors import BadRequestError, ClientError, UnauthorizedError
from binance_common.utils import send_request
from binance_sdk_spot.spot import Spot

from tests.conformance_helpers import (  # noqa: F401  (pytest fixtures)
    KEY, SYMBOL, D, _clean_book, exchange, sdk_data, sdk_error, spot,
)

Q = D("0.001")


def _limit(spot, side, price, cid, qty=Q, **kw):
    return spot.new_order(symbol=SYMBOL, side=side, type="LIMIT", time_in_force="GTC", quantity=qty,
                          price=price, new_client_order_id=cid, **kw)


def test_public_endpoints_parse(spot):
    assert spot.ping().data() == {}  # no response model for ping
    t = sdk_data(spot.time())
    assert abs(t.server_time - time.time() * 1000) < 5000
    info = sdk_data(spot.exchange_info(symbol=SYMBOL))
    sym = info.symbols[0]
    kinds = {f.actual_instance.filter_type for f in sym.filters}
    assert sym.symbol == SYMBOL and {"PRICE_FILTER", "LOT_SIZE", "NOTIONAL"} <= kinds
    book = sdk_data(spot.ticker_book_ticker(symbol=SYMBOL)).actual_instance
    assert D(book.bid_price) < D(book.ask_price)
    assert D(sdk_data(spot.ticker_price(symbol=SYMBOL)).actual_instance.price) == D("60000")


def test_place_query_cancel_limit(spot, exchange):
    resp = _limit(spot, "BUY", D("59000.00"), "sdk-l1")
    o = sdk_data(resp)
    assert (o.symbol, o.status, o.client_order_id, o.type, o.side) == (SYMBOL, "NEW", "sdk-l1", "LIMIT", "BUY")
    assert D(o.price) == D("59000") and D(o.orig_qty) == Q and o.fills == [] and o.order_list_id == -1
    # Binance's rate-limit headers on an order: request weight and unfilled order counts.
    kinds = {(r.rateLimitType, r.interval, r.intervalNum) for r in resp.rate_limits}
    assert ("REQUEST_WEIGHT", "MINUTE", 1) in kinds
    assert ("ORDERS", "SECOND", 10) in kinds and ("ORDERS", "DAY", 1) in kinds

    by_id = sdk_data(spot.get_order(symbol=SYMBOL, order_id=o.order_id))
    by_cid = sdk_data(spot.get_order(symbol=SYMBOL, orig_client_order_id="sdk-l1"))
    assert by_id == by_cid and by_id.status == "NEW" and by_id.is_working is True
    opens = sdk_data(spot.get_open_orders(symbol=SYMBOL))
    assert [x.order_id for x in opens] == [o.order_id]

    c = sdk_data(spot.delete_order(symbol=SYMBOL, orig_client_order_id="sdk-l1", new_client_order_id="sdk-c1"))
    assert (c.status, c.orig_client_order_id, c.client_order_id) == ("CANCELED", "sdk-l1", "sdk-c1")
    assert sdk_data(spot.get_order(symbol=SYMBOL, order_id=o.order_id)).status == "CANCELED"
    assert sdk_data(spot.get_open_orders(symbol=SYMBOL)) == []


@pytest.mark.parametrize("resp_type", ["ACK", "RESULT", "FULL"])
def test_new_order_resp_types_parse(spot, resp_type):
    o = sdk_data(_limit(spot, "BUY", D("58000.00"), f"sdk-rt-{resp_type}", new_order_resp_type=resp_type))
    assert o.client_order_id == f"sdk-rt-{resp_type}"
    assert (o.status is None) == (resp_type == "ACK")
    assert (o.fills is None) == (resp_type != "FULL")


def test_market_fill_account_and_my_trades(spot, exchange):
    before = {b.asset: D(b.free) for b in sdk_data(spot.get_account()).balances}
    o = sdk_data(spot.new_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity=Q, new_client_order_id="sdk-m1"))
    assert o.status == "FILLED" and D(o.executed_qty) == Q and len(o.fills) == 1
    f = o.fills[0]
    assert f.commission_asset == "BTC" and D(f.commission) == Q * D("0.001")
    _, ask = exchange.book()
    assert D(f.price) >= ask  # a market buy pays at least the ask (slippage makes it worse, never better)

    trades = sdk_data(spot.my_trades(symbol=SYMBOL, order_id=o.order_id))
    assert [(t.order_id, D(t.qty), t.is_buyer, t.is_maker) for t in trades] == [(o.order_id, Q, True, False)]
    assert trades[0].id == f.trade_id and D(trades[0].quote_qty) == D(f.price) * Q

    acct = sdk_data(spot.get_account())
    after = {b.asset: D(b.free) for b in acct.balances}
    assert acct.can_trade is True and acct.account_type == "SPOT"
    assert after["BTC"] - before["BTC"] == Q - D(f.commission)
    assert before["USDC"] - after["USDC"] == D(o.cummulative_quote_qty)


def test_oco_place_query_cancel(spot, exchange):
    resp = spot.order_list_oco(
        symbol=SYMBOL, side="SELL", quantity=Q, list_client_order_id="sdk-oco1",
        above_type="LIMIT_MAKER", above_price=D("61000.00"), above_client_order_id="sdk-oco1-tp",
        below_type="STOP_LOSS_LIMIT", below_stop_price=D("59000.00"), below_price=D("58900.00"),
        below_time_in_force="GTC", below_client_order_id="sdk-oco1-sl", new_order_resp_type="RESULT")
    lst = sdk_data(resp)  # RESULT asked for: the default for an order list's legs is ACK (no types in the reports)
    assert (lst.contingency_type, lst.list_status_type, lst.list_order_status) == ("OCO", "EXEC_STARTED", "EXECUTING")
    assert lst.list_client_order_id == "sdk-oco1" and len(lst.orders) == 2 and len(lst.order_reports) == 2
    types = sorted(r.type for r in lst.order_reports)
    assert types == ["LIMIT_MAKER", "STOP_LOSS_LIMIT"]
    assert all(r.order_list_id == lst.order_list_id for r in lst.order_reports)

    got = sdk_data(spot.get_order_list(order_list_id=lst.order_list_id))
    assert got.list_client_order_id == "sdk-oco1" and {o.order_id for o in got.orders} == {
        o.order_id for o in lst.orders}
    leg = sdk_data(spot.get_order(symbol=SYMBOL, orig_client_order_id="sdk-oco1-sl"))
    assert leg.order_list_id == lst.order_list_id and D(leg.stop_price) == D("59000")

    gone = sdk_data(spot.delete_order_list(symbol=SYMBOL, list_client_order_id="sdk-oco1"))
    assert gone.list_order_status == "ALL_DONE" and {r.status for r in gone.order_reports} == {"CANCELED"}


def test_oco_fill_expires_other_leg(spot, exchange):
    lst = sdk_data(spot.order_list_oco(
        symbol=SYMBOL, side="SELL", quantity=Q, above_type="LIMIT_MAKER", above_price=D("60100.00"),
        below_type="STOP_LOSS", below_stop_price=D("59000.00")))
    exchange.price("60200.00")  # trades through the take-profit
    statuses = {sdk_data(spot.get_order(symbol=SYMBOL, order_id=o.order_id)).type:
                sdk_data(spot.get_order(symbol=SYMBOL, order_id=o.order_id)).status for o in lst.orders}
    assert statuses == {"LIMIT_MAKER": "FILLED", "STOP_LOSS": "EXPIRED"}
    assert sdk_data(spot.get_order_list(order_list_id=lst.order_list_id)).list_order_status == "ALL_DONE"


def test_cancel_replace_success_and_failures(spot):
    o = sdk_data(_limit(spot, "BUY", D("59000.00"), "sdk-cr1"))
    r = sdk_data(spot.order_cancel_replace(
        symbol=SYMBOL, side="BUY", type="LIMIT", cancel_replace_mode="STOP_ON_FAILURE", time_in_force="GTC",
        quantity=Q, price=D("59100.00"), cancel_order_id=o.order_id, new_client_order_id="sdk-cr2"))
    assert (r.cancel_result, r.new_order_result) == ("SUCCESS", "SUCCESS")
    assert r.cancel_response.status == "CANCELED" and r.new_order_response.client_order_id == "sdk-cr2"

    # Cancel fails (unknown order), new order not attempted: HTTP 400, -2022.
    e = sdk_error(lambda: spot.order_cancel_replace(
        symbol=SYMBOL, side="BUY", type="LIMIT", cancel_replace_mode="STOP_ON_FAILURE", time_in_force="GTC",
        quantity=Q, price=D("59100.00"), cancel_order_id=987654321))
    assert isinstance(e, BadRequestError) and (e.status_code, e.error_message) == (-2022, "Order cancel-replace failed.")

    # New order fails a filter: Binance evaluates filters BEFORE cancelling, so both fail (HTTP 400, -2022) and
    # the old order is still open.
    e = sdk_error(lambda: spot.order_cancel_replace(
        symbol=SYMBOL, side="BUY", type="LIMIT", cancel_replace_mode="STOP_ON_FAILURE", time_in_force="GTC",
        quantity=Q, price=D("59100.001"), cancel_orig_client_order_id="sdk-cr2"))
    assert isinstance(e, BadRequestError) and (e.status_code, e.error_message) == (-2022, "Order cancel-replace failed.")
    assert sdk_data(spot.get_order(symbol=SYMBOL, orig_client_order_id="sdk-cr2")).status == "NEW"

    # Cancel succeeds, the matching engine refuses the new order (a stop that would trigger at once): HTTP 409,
    # -2021 (the SDK maps 409 to a plain ClientError), and the old order is gone.
    e = sdk_error(lambda: spot.order_cancel_replace(
        symbol=SYMBOL, side="BUY", type="STOP_LOSS_LIMIT", cancel_replace_mode="STOP_ON_FAILURE", time_in_force="GTC",
        quantity=Q, price=D("59000.00"), stop_price=D("59000.00"), cancel_orig_client_order_id="sdk-cr2"))
    assert type(e) is ClientError and e.error_message == "Order cancel-replace partially failed."
    assert sdk_data(spot.get_order(symbol=SYMBOL, orig_client_order_id="sdk-cr2")).status == "CANCELED"


# ---- errors ------------------------------------------------------------------------------------

@pytest.mark.parametrize("kw, msg", [
    ({"price": D("59000.005"), "quantity": Q}, "Filter failure: PRICE_FILTER"),
    ({"price": D("59000.00"), "quantity": D("0.0010001")}, "Filter failure: LOT_SIZE"),
    ({"price": D("100.00"), "quantity": D("0.001")}, "Filter failure: NOTIONAL"),
])
def test_filter_failures_1013(spot, kw, msg):
    e = sdk_error(lambda: spot.new_order(symbol=SYMBOL, side="BUY", type="LIMIT", time_in_force="GTC", **kw))
    assert isinstance(e, BadRequestError) and (e.status_code, e.error_message) == (-1013, msg)


@pytest.mark.parametrize("kw, msg", [
    ({"type": "LIMIT", "time_in_force": "GTC", "quantity": D("100"), "price": D("59000.00")},
     "Account has insufficient balance for requested action."),
    ({"type": "STOP_LOSS_LIMIT", "time_in_force": "GTC", "quantity": Q, "price": D("60500.00"),
      "stop_price": D("60500.00")}, "Stop price would trigger immediately."),
    ({"type": "LIMIT_MAKER", "quantity": Q, "price": D("60100.00")}, "Order would immediately match and take."),
])
def test_rejections_2010(spot, kw, msg):
    side = "SELL" if kw["type"] == "STOP_LOSS_LIMIT" else "BUY"
    e = sdk_error(lambda: spot.new_order(symbol=SYMBOL, side=side, **kw))
    assert isinstance(e, BadRequestError) and (e.status_code, e.error_message) == (-2010, msg)


def test_unknown_orders_2011_2013(spot):
    e = sdk_error(lambda: spot.delete_order(symbol=SYMBOL, order_id=99999999))
    assert isinstance(e, BadRequestError) and (e.status_code, e.error_message) == (-2011, "Unknown order sent.")
    e = sdk_error(lambda: spot.get_order(symbol=SYMBOL, orig_client_order_id="never-placed"))
    assert isinstance(e, BadRequestError) and (e.status_code, e.error_message) == (-2013, "Order does not exist.")
    # A filled order cannot be cancelled: Binance answers -2011 too.
    o = sdk_data(spot.new_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity=Q))
    e = sdk_error(lambda: spot.delete_order(symbol=SYMBOL, order_id=o.order_id))
    assert (e.status_code, e.error_message) == (-2011, "Unknown order sent.")


def _signed_get(spot, path, params):
    # SpotRestAPI.send_signed_request is broken in 13.3.0 (`send_request[T]` on a function): call the SDK's
    # own send_request, which is what every SDK method uses.
    return send_request(spot._session, spot.configuration, "GET", path, params, is_signed=True)


def test_timestamp_outside_recv_window_1021(spot):
    old = int(time.time() * 1000) - 10_000
    e = sdk_error(lambda: _signed_get(spot, "/api/v3/account", {"timestamp": old}))
    assert isinstance(e, BadRequestError)
    assert (e.status_code, e.error_message) == (-1021, "Timestamp for this request is outside of the recvWindow.")
    ahead = int(time.time() * 1000) + 5_000
    e = sdk_error(lambda: _signed_get(spot, "/api/v3/account", {"timestamp": ahead}))
    assert (e.status_code, e.error_message) == (
        -1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    # The same old timestamp is fine inside a wider (decimal, as the SDK types it) recvWindow.
    r = _signed_get(spot, "/api/v3/account", {"timestamp": old, "recvWindow": "20000.5"})
    assert r.status == 200 and r.data()["accountType"] == "SPOT"


def test_bad_signature_1022_and_bad_key_2015(exchange):
    wrong = Spot(config_rest_api=ConfigurationRestAPI(api_key=KEY, api_secret="not-the-secret",
                                                      base_path=exchange.url, retries=0)).rest_api
    e = sdk_error(lambda: wrong.get_account())
    assert isinstance(e, BadRequestError)
    assert (e.status_code, e.error_message) == (-1022, "Signature for this request is not valid.")
    stranger = Spot(config_rest_api=ConfigurationRestAPI(api_key="someone-else", api_secret="x",
                                                         base_path=exchange.url, retries=0)).rest_api
    e = sdk_error(lambda: stranger.get_account())
    assert isinstance(e, UnauthorizedError)
    assert (e.status_code, e.error_message) == (-2015, "Invalid API-key, IP, or permissions for action.")


def test_float_quantities_are_sent_as_written(spot):
    """The SDK types quantities as float: str(1e-05) is '1e-05', which Binance refuses as an illegal decimal."""
    e = sdk_error(lambda: spot.new_order(symbol=SYMBOL, side="BUY", type="LIMIT", time_in_force="GTC",
                                         quantity=0.00001, price=59000.0))
    assert isinstance(e, BadRequestError) and e.status_code == -1100
    assert "quantity" in e.error_message
    o = sdk_data(spot.new_order(symbol=SYMBOL, side="BUY", type="LIMIT", time_in_force="GTC", quantity=0.001,
                                price=59000.5))  # '59000.5' and '0.001' are fine as floats
    assert D(o.price) == Decimal("59000.5")


@pytest.mark.parametrize("kw", [{"quantity": D("0.00001")}, {"quote_order_qty": D("1")}])
def test_market_orders_obey_notional_1013(spot, kw):
    """exchangeInfo says applyMinToMarket: a 0.6 USDC market order is refused, as on Binance."""
    e = sdk_error(lambda: spot.new_order(symbol=SYMBOL, side="BUY", type="MARKET", **kw))
    assert isinstance(e, BadRequestError) and (e.status_code, e.error_message) == (-1013, "Filter failure: NOTIONAL")


def test_all_orders_cancel_all_and_account_parse(spot):
    a = sdk_data(_limit(spot, "BUY", D("57000.00"), "sdk-all1"))
    b = sdk_data(_limit(spot, "BUY", D("57001.00"), "sdk-all2"))
    every = sdk_data(spot.all_orders(symbol=SYMBOL))
    assert {a.order_id, b.order_id} <= {o.order_id for o in every}
    gone = sdk_data(spot.delete_open_orders(symbol=SYMBOL))
    cancelled = {x.order_id for x in gone}
    assert {a.order_id, b.order_id} <= cancelled
    acct = sdk_data(spot.get_account(omit_zero_balances=True))
    assert acct.commission_rates is not None and D(acct.commission_rates.taker) == D("0.001")


def test_rate_limit_429_reaches_the_sdk(spot, exchange):
    exchange.admin("/admin/faults", {"http_429": 1, "retry_after": 3, "path": "/api/v3/account"})
    from binance_common.errors import TooManyRequestsError
    e = sdk_error(lambda: spot.get_account())
    assert isinstance(e, TooManyRequestsError) and e.status_code == -1003 and e.retry_after == 3
