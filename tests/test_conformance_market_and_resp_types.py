"""Issue 14 conformance, each case against Binance's spot API docs: newOrderRespType defaults (ACK for every type
but MARKET and LIMIT; order-list reports follow it), ticker/bookTicker and ticker/price arrays without `symbol`,
ticker/24hr and depth (shapes parsed by the official SDK, weights), exchangeInfo's margin flags, -3015's message."""
from __future__ import annotations

import time
from decimal import Decimal
from urllib.parse import urlencode

import pytest
from binance_common.errors import BadRequestError

from tests.conformance_helpers import (  # noqa: F401  (pytest fixtures)
    SYMBOL, D, _clean_book, _signed, exchange, margin, pyb, sdk_data, sdk_error, spot,
)

FEED = "BTCUSDT"
ACK_KEYS = {"symbol", "orderId", "orderListId", "clientOrderId", "transactTime"}


def _post(exchange, path, **params):
    q = urlencode({**params, "timestamp": int(time.time() * 1000)})
    return exchange.raw("POST", path, _signed(q))


@pytest.mark.parametrize("kind, extra, keys", [
    ("LIMIT", {"timeInForce": "GTC", "price": "59000.00"}, "FULL"),
    ("MARKET", {}, "FULL"),
    ("LIMIT_MAKER", {"price": "59000.00"}, "ACK"),
    ("STOP_LOSS_LIMIT", {"timeInForce": "GTC", "price": "59000.00", "stopPrice": "59000.00"}, "ACK"),
    ("STOP_LOSS", {"stopPrice": "59000.00"}, "ACK"),
    ("TAKE_PROFIT_LIMIT", {"timeInForce": "GTC", "price": "61000.00", "stopPrice": "61000.00"}, "ACK"),
])
@pytest.mark.parametrize("path", ["/api/v3/order", "/sapi/v1/margin/order"])
def test_new_order_resp_type_default_by_order_type(exchange, path, kind, extra, keys):
    side = "BUY" if kind in ("LIMIT", "MARKET", "LIMIT_MAKER") else "SELL"
    r = _post(exchange, path, symbol=SYMBOL, side=side, type=kind, quantity="0.001", **extra)
    assert r.status_code == 200, r.text
    body = set(r.json()) - {"isIsolated", "marginBuyBorrowAmount", "marginBuyBorrowAsset"}
    if keys == "ACK":
        assert body == ACK_KEYS
    else:
        assert "fills" in body and "status" in body


@pytest.mark.parametrize("resp_type", ["ACK", "RESULT", "FULL"])
def test_new_order_resp_type_as_asked(exchange, resp_type):
    r = _post(exchange, "/api/v3/order", symbol=SYMBOL, side="SELL", type="STOP_LOSS", quantity="0.001",
              stopPrice="59000.00", newOrderRespType=resp_type)
    body = set(r.json())
    assert (body == ACK_KEYS) == (resp_type == "ACK")
    assert ("fills" in body) == (resp_type == "FULL") and ("status" in body) == (resp_type != "ACK")


def test_bad_resp_type_is_1100_and_places_nothing(exchange):
    r = _post(exchange, "/api/v3/order", symbol=SYMBOL, side="BUY", type="LIMIT", quantity="0.001",
              timeInForce="GTC", price="59000.00", newOrderRespType="SHORT", newClientOrderId="bad-rt")
    assert r.status_code == 400 and r.json()["code"] == -1100
    assert not [o for o in exchange.admin("/admin/orders") if o["clientOrderId"] == "bad-rt"]


@pytest.mark.parametrize("resp_type, shape", [(None, "ACK"), ("RESULT", "RESULT"), ("FULL", "FULL")])
def test_oco_order_reports_follow_resp_type(exchange, resp_type, shape):
    params = dict(symbol=SYMBOL, side="SELL", quantity="0.001", aboveType="LIMIT_MAKER", abovePrice="61000.00",
                  belowType="STOP_LOSS_LIMIT", belowPrice="58900.00", belowStopPrice="59000.00",
                  belowTimeInForce="GTC")
    if resp_type:
        params["newOrderRespType"] = resp_type
    r = _post(exchange, "/api/v3/orderList/oco", **params)
    assert r.status_code == 200, r.text
    for rep in r.json()["orderReports"]:
        assert (set(rep) == ACK_KEYS) == (shape == "ACK")
        assert ("fills" in rep) == (shape == "FULL")


def test_cancel_replace_new_order_response_follows_resp_type(exchange):
    r = _post(exchange, "/api/v3/order", symbol=SYMBOL, side="SELL", type="STOP_LOSS", quantity="0.001",
              stopPrice="59000.00", newClientOrderId="cr-rt1")
    assert r.status_code == 200
    r = _post(exchange, "/api/v3/order/cancelReplace", symbol=SYMBOL, side="SELL", type="STOP_LOSS",
              quantity="0.001", stopPrice="59100.00", cancelReplaceMode="STOP_ON_FAILURE",
              cancelOrigClientOrderId="cr-rt1", newClientOrderId="cr-rt2")
    assert r.status_code == 200 and set(r.json()["newOrderResponse"]) == ACK_KEYS


# ---- market data -------------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/api/v3/ticker/bookTicker", "/api/v3/ticker/price", "/api/v3/ticker/24hr"])
def test_tickers_without_symbol_are_arrays_with_symbol_an_object(exchange, path):
    all_ = exchange.raw("GET", path).json()
    assert isinstance(all_, list) and [t["symbol"] for t in all_] == [SYMBOL, FEED]
    one = exchange.raw("GET", path, f"symbol={SYMBOL}").json()
    assert isinstance(one, dict) and one["symbol"] == SYMBOL
    some = exchange.raw("GET", path, 'symbols=["BTCUSDT"]').json()
    assert isinstance(some, list) and [t["symbol"] for t in some] == [FEED]
    assert exchange.raw("GET", path, "symbol=ETHBTC").json()["code"] == -1121


def test_sdk_parses_the_arrays_and_the_24hr_ticker(spot, exchange):
    books = sdk_data(spot.ticker_book_ticker()).actual_instance
    assert [b.symbol for b in books] == [SYMBOL, FEED]
    prices = sdk_data(spot.ticker_price()).actual_instance
    assert {p.symbol: D(p.price) for p in prices}[SYMBOL] == D("60000")
    t = sdk_data(spot.ticker24hr(symbol=SYMBOL)).actual_instance
    assert D(t.last_price) == D("60000") and D(t.low_price) <= D("60000") <= D(t.high_price)
    assert D(t.bid_price) < D(t.ask_price) and t.close_time - t.open_time == 86_400_000
    mini = sdk_data(spot.ticker24hr(symbols=[SYMBOL, FEED], type="MINI")).actual_instance
    assert [m.symbol for m in mini] == [SYMBOL, FEED] and mini[0].bid_price is None and mini[0].count >= 0


def test_depth_is_built_from_the_book(spot, exchange):
    bid, ask = exchange.book()
    d = sdk_data(spot.depth(symbol=SYMBOL, limit=5))
    assert len(d.bids) == len(d.asks) == 5
    assert D(d.bids[0][0]) == bid and D(d.asks[0][0]) == ask
    assert [D(b[0]) for b in d.bids] == sorted((D(b[0]) for b in d.bids), reverse=True)
    assert [D(a[0]) for a in d.asks] == sorted(D(a[0]) for a in d.asks)
    assert len(sdk_data(spot.depth(symbol=FEED)).bids) == 100  # the default limit
    e = sdk_error(lambda: spot.depth(symbol="ETHBTC"))
    assert isinstance(e, BadRequestError) and e.status_code == -1121


def test_python_binance_market_data_calls(pyb, exchange):
    """python-binance's own helpers expect Binance's shapes: lists without a symbol, the 24hr dict, the book."""
    assert [t["symbol"] for t in pyb.get_all_tickers()] == [SYMBOL, FEED]
    assert [t["symbol"] for t in pyb.get_orderbook_tickers()] == [SYMBOL, FEED]
    assert D(pyb.get_ticker(symbol=SYMBOL)["lastPrice"]) == D("60000")
    assert len(pyb.get_ticker()) == 2
    book = pyb.get_order_book(symbol=SYMBOL, limit=10)
    assert len(book["bids"]) == 10 and D(book["bids"][0][0]) == exchange.book()[0]


def _weight(exchange, query):
    path, _, q = query.partition("?")
    for _ in range(3):  # a minute boundary between the two calls resets the counter: try again
        a = int(exchange.raw("GET", path, q).headers["X-MBX-USED-WEIGHT-1M"])
        b = int(exchange.raw("GET", path, q).headers["X-MBX-USED-WEIGHT-1M"])
        if b > a:
            return b - a
    raise AssertionError("weight counter never grew")


@pytest.mark.parametrize("query, weight", [
    (f"/api/v3/ticker/bookTicker?symbol={SYMBOL}", 2), ("/api/v3/ticker/bookTicker", 4),
    (f"/api/v3/ticker/price?symbol={SYMBOL}", 2), ("/api/v3/ticker/price", 4),
    (f"/api/v3/ticker/24hr?symbol={SYMBOL}", 2), ("/api/v3/ticker/24hr", 80),
    ('/api/v3/ticker/24hr?symbols=["BTCUSDC","BTCUSDT"]', 2),
    (f"/api/v3/depth?symbol={SYMBOL}", 5), (f"/api/v3/depth?symbol={SYMBOL}&limit=500", 25),
    (f"/api/v3/depth?symbol={SYMBOL}&limit=1000", 50), (f"/api/v3/depth?symbol={SYMBOL}&limit=5000", 250),
])
def test_market_data_weights(exchange, query, weight):
    assert _weight(exchange, query) == weight


# ---- exchangeInfo and margin -------------------------------------------------------------------

def test_exchange_info_margin_flags(spot):
    info = sdk_data(spot.exchange_info())
    by = {s.symbol: s for s in info.symbols}
    assert by[SYMBOL].is_margin_trading_allowed is True and "MARGIN" in by[SYMBOL].permission_sets[0]
    assert by[SYMBOL].is_spot_trading_allowed is True
    assert by[FEED].is_spot_trading_allowed is False


def test_repay_above_the_loan_is_3015_with_binance_message(margin):
    sdk_data(margin.margin_account_borrow_repay(asset="USDC", is_isolated="FALSE", amount="100", type="BORROW"))
    e = sdk_error(lambda: margin.margin_account_borrow_repay(asset="USDC", is_isolated="FALSE", amount="1000000",
                                                             type="REPAY"))
    assert isinstance(e, BadRequestError)
    assert (e.status_code, e.error_message) == (-3015, "Repay amount exceeds borrow amount.")
    sdk_data(margin.margin_account_borrow_repay(asset="USDC", is_isolated="FALSE", amount="100", type="REPAY"))
