"""Conformance on the wire: hand-built requests for what the SDKs hide — signature bytes, parameter
precedence, recvWindow/timestamp forms, rate-limit headers — each against Binance's documented behaviour."""
from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlencode

import pytest

from tests.conformance_helpers import KEY, SECRET, SYMBOL, _clean_book, exchange  # noqa: F401


def _sig(payload: str) -> str:
    return hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()


def _now() -> int:
    return int(time.time() * 1000)


def _order_q(cid: str, **extra: str) -> str:
    params = {"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
              "price": "59000.00", "newClientOrderId": cid, **extra, "timestamp": str(_now())}
    return urlencode(params)


def test_signature_is_over_the_bytes_sent_not_a_sorted_copy(exchange):
    q = _order_q("wire-s1")  # not sorted: symbol, side, type, ...
    assert q != "&".join(sorted(q.split("&")))
    r = exchange.raw("POST", "/api/v3/order", f"{q}&signature={_sig(q)}")
    assert r.status_code == 200 and r.json()["clientOrderId"] == "wire-s1"
    q = _order_q("wire-s2")
    sorted_sig = _sig("&".join(sorted(q.split("&"))))
    r = exchange.raw("POST", "/api/v3/order", f"{q}&signature={sorted_sig}")
    assert (r.status_code, r.json()) == (400, {"code": -1022, "msg": "Signature for this request is not valid."})


def test_signature_is_over_the_percent_encoded_bytes(exchange):
    # In the body: `requests` re-quotes URLs (it would turn %2D back into '-') but sends a body as given.
    q = _order_q("wire-x").replace("wire-x", "wire%2Dpct")  # '-' needlessly escaped: same value, other bytes
    r = exchange.raw("POST", "/api/v3/order", "", f"{q}&signature={_sig(q)}")
    assert r.status_code == 200 and r.json()["clientOrderId"] == "wire-pct"
    q2 = _order_q("wire-x").replace("wire-x", "wire%2Dpc2")
    r = exchange.raw("POST", "/api/v3/order", "", f"{q2}&signature={_sig(q2.replace('%2D', '-'))}")
    assert r.json()["code"] == -1022


def test_query_plus_body_signature_is_their_concatenation(exchange):
    """Binance's totalParams: query string immediately followed by the body (no '&' between)."""
    query = f"symbol={SYMBOL}&side=BUY&type=LIMIT&timeInForce=GTC"
    body = f"quantity=0.001&price=59000.00&newClientOrderId=wire-qb&timestamp={_now()}"
    r = exchange.raw("POST", "/api/v3/order", query, f"{body}&signature={_sig(query + body)}")
    assert r.status_code == 200 and r.json()["clientOrderId"] == "wire-qb"


def test_query_string_wins_over_body(exchange):
    """'If a parameter sent in both the query string and request body, the query string parameter will be used.'"""
    query = f"symbol={SYMBOL}&side=BUY&type=LIMIT&timeInForce=GTC&price=58000.00"
    body = f"quantity=0.001&price=59000.00&newClientOrderId=wire-prec&timestamp={_now()}"
    r = exchange.raw("POST", "/api/v3/order", query, f"{body}&signature={_sig(query + body)}")
    assert r.status_code == 200 and r.json()["price"] == "58000.00000000"


def test_duplicate_parameter_is_1101(exchange):
    q = _order_q("wire-dup") + "&price=58000.00"
    r = exchange.raw("POST", "/api/v3/order", f"{q}&signature={_sig(q)}")
    assert (r.status_code, r.json()) == (400, {"code": -1101, "msg": "Duplicate values for a parameter detected."})


@pytest.mark.parametrize("extra, status, code", [
    ({"recvWindow": "20000.5"}, 200, None),          # milliseconds with microsecond decimals
    ({"recvWindow": "5000.1234"}, 400, -1100),       # at most three decimals
    ({"recvWindow": "60001"}, 400, -1131),
])
def test_recv_window_forms(exchange, extra, status, code):
    q = urlencode({"timestamp": _now() - 10_000, **extra})
    r = exchange.raw("GET", "/api/v3/account", f"{q}&signature={_sig(q)}")
    assert r.status_code == status and (code is None or r.json()["code"] == code)


def test_timestamp_in_microseconds(exchange):
    q = f"timestamp={int(time.time() * 1_000_000)}"
    r = exchange.raw("GET", "/api/v3/account", f"{q}&signature={_sig(q)}")
    assert r.status_code == 200
    q = f"timestamp={int(time.time() * 1_000_000) - 6_000_000}"
    r = exchange.raw("GET", "/api/v3/account", f"{q}&signature={_sig(q)}")
    assert r.json() == {"code": -1021, "msg": "Timestamp for this request is outside of the recvWindow."}


def test_auth_failures(exchange):
    q = f"timestamp={_now()}"
    r = exchange.raw("GET", "/api/v3/account", f"{q}&signature={_sig(q)}", headers={"X-MBX-APIKEY": ""})
    assert (r.status_code, r.json()["code"]) == (401, -2014)
    r = exchange.raw("GET", "/api/v3/account", q)
    assert (r.status_code, r.json()["code"]) == (400, -1102)
    assert r.headers["Content-Type"].startswith("application/json")


def _weight(r, header="X-MBX-USED-WEIGHT-1M") -> int:
    return int(r.headers[header])


@pytest.mark.parametrize("path, query, weight", [
    ("/api/v3/account", "", 20),
    ("/api/v3/exchangeInfo", None, 20),
    ("/api/v3/openOrders", "", 80),                     # without a symbol
    ("/api/v3/openOrders", f"symbol={SYMBOL}", 6),
    ("/api/v3/myTrades", f"symbol={SYMBOL}", 20),
    ("/api/v3/ping", None, 1),
])
def test_request_weights(exchange, path, query, weight):
    def call():
        if query is None:
            return exchange.raw("GET", path)
        q = (query + "&" if query else "") + f"timestamp={_now()}"
        return exchange.raw("GET", path, f"{q}&signature={_sig(q)}")
    for _ in range(3):  # a minute boundary between the two calls resets the counter: try again
        first, second = call(), call()
        if _weight(second) > _weight(first):
            break
    assert _weight(second) - _weight(first) == weight


def test_order_count_and_sapi_weight_headers(exchange):
    q = _order_q("wire-cnt")
    r = exchange.raw("POST", "/api/v3/order", f"{q}&signature={_sig(q)}")
    assert r.status_code == 200
    assert int(r.headers["X-MBX-ORDER-COUNT-10S"]) >= 1 and int(r.headers["X-MBX-ORDER-COUNT-1D"]) >= 1
    q = f"timestamp={_now()}"
    r = exchange.raw("GET", "/sapi/v1/margin/account", f"{q}&signature={_sig(q)}")
    assert r.status_code == 200 and int(r.headers["X-SAPI-USED-IP-WEIGHT-1M"]) >= 10
    q = urlencode({"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
                   "price": "50000.00", "timestamp": _now()})
    r = exchange.raw("POST", "/sapi/v1/margin/order", f"{q}&signature={_sig(q)}")
    assert r.status_code == 200 and int(r.headers["X-SAPI-USED-UID-WEIGHT-1M"]) >= 6
