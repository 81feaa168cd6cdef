"""BinanceClient: signing, clock re-sync, typed errors, back-off, secrecy (real HTTP on loopback)."""
from __future__ import annotations

import logging
import socket
import time
from decimal import Decimal
from urllib.parse import urlencode

import pytest
import requests

from shared.adapters.binance_rest import (
    BinanceClient, BinanceError, ClockSkew, NotFound, RateLimited, Rejected, Unreachable, dec, sign,
)

from tests.pe_helpers import KEY, SECRET, SYMBOL, pe  # noqa: F401  (pytest fixture: a real paper exchange)

VECTOR_KEY = "vmPUZE6mv9SD5VNHk4HlWFsOr6aKE2zvsw0MuIgwCIPy6utIco14y7Ju91duEh8A"
VECTOR_SECRET = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
VECTOR_PAYLOAD = ("symbol=LTCBTC&side=BUY&type=LIMIT&timeInForce=GTC&quantity=1&price=0.1"
                  "&recvWindow=5000&timestamp=1499827319559")
VECTOR_SIG = "c8db56825ae71d6d79447849e617115f4a920fa2acdcab2b053c4b2838bd6b71"


def test_signature_reproduces_binance_documented_vector():
    assert sign(VECTOR_SECRET.encode(), VECTOR_PAYLOAD) == VECTOR_SIG


def test_decimal_params_are_plain_and_floats_refused(pe):
    assert dec(Decimal("1E-5")) == "0.00001"
    assert dec(Decimal("95000.10")) == "95000.10"
    with pytest.raises(TypeError):
        pe.client().place_order(SYMBOL, "BUY", "MARKET", 0.001, client_order_id="f1")  # type: ignore[arg-type]


def _signed_query(params: dict[str, str], secret: str = SECRET) -> str:
    q = urlencode(params)
    return q + "&signature=" + sign(secret.encode(), q)


def _now_ms() -> int:
    return int(time.time() * 1000)


def test_tampered_signature_is_1022(pe):
    q = _signed_query({"symbol": SYMBOL, "recvWindow": "5000", "timestamp": str(_now_ms())})
    ok = requests.get(f"{pe.url}/api/v3/openOrders?{q}", headers={"X-MBX-APIKEY": KEY}, timeout=5)
    assert ok.status_code == 200, ok.text
    tampered = q.replace("recvWindow=5000", "recvWindow=5001")
    r = requests.get(f"{pe.url}/api/v3/openOrders?{tampered}", headers={"X-MBX-APIKEY": KEY}, timeout=5)
    assert r.status_code == 400
    assert r.json() == {"code": -1022, "msg": "Signature for this request is not valid."}


def test_signature_over_body_and_query_as_received(pe):
    """Binance signs query + body concatenated; the server must verify the raw bytes."""
    body = _signed_query({"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                          "quantity": "0.00100", "price": "90000.00", "newClientOrderId": "body-1",
                          "recvWindow": "5000", "timestamp": str(_now_ms())})
    r = requests.post(f"{pe.url}/api/v3/order", data=body, timeout=5,
                      headers={"X-MBX-APIKEY": KEY, "Content-Type": "application/x-www-form-urlencoded"})
    assert r.status_code == 200, r.text
    assert pe.order("body-1")["status"] == "NEW"


def test_wrong_secret_is_rejected_1022_and_not_executed(pe):
    bad = BinanceClient(pe.url, KEY, "not-the-secret")
    with pytest.raises(Rejected) as ei:
        bad.place_order(SYMBOL, "BUY", "MARKET", Decimal("0.001"), client_order_id="nope")
    assert (ei.value.code, ei.value.http_status) == (-1022, 400)
    assert ei.value.outcome_known
    assert pe.get("/admin/orders") == []
    bad.close()


@pytest.mark.parametrize("skew_ms,msg", [
    (-10_000, "Timestamp for this request is outside of the recvWindow."),
    (5_000, "Timestamp for this request was 1000ms ahead of the server's time."),
])
def test_stale_or_future_timestamp_is_1021(pe, skew_ms, msg):
    q = _signed_query({"symbol": SYMBOL, "recvWindow": "5000", "timestamp": str(_now_ms() + skew_ms)})
    r = requests.get(f"{pe.url}/api/v3/openOrders?{q}", headers={"X-MBX-APIKEY": KEY}, timeout=5)
    assert r.status_code == 400
    assert r.json() == {"code": -1021, "msg": msg}


def test_client_resyncs_clock_once_on_1021(pe):
    c = pe.client()
    c.time_offset_ms = -30_000  # as if our clock ran 30 s fast against the exchange
    assert c.open_orders(SYMBOL) == []
    assert abs(c.time_offset_ms) < 1000  # re-measured


def test_persistent_1021_raises_clock_skew(pe):
    c = pe.client()
    pe.post("/admin/faults", {"err_1021": 2, "path": "/api/v3/openOrders"})
    with pytest.raises(ClockSkew) as ei:
        c.open_orders(SYMBOL)
    assert ei.value.code == -1021 and ei.value.outcome_known
    assert pe.get("/admin/faults")["faults"] == []  # both consumed: exactly one retry happened


@pytest.mark.parametrize("headers,code", [({}, -2014), ({"X-MBX-APIKEY": "someone-else"}, -2015)])
def test_api_key_errors(pe, headers, code):
    q = _signed_query({"symbol": SYMBOL, "recvWindow": "5000", "timestamp": str(_now_ms())})
    r = requests.get(f"{pe.url}/api/v3/openOrders?{q}", headers=headers, timeout=5)
    assert r.status_code == 401
    assert r.json()["code"] == code


def test_not_found_is_typed(pe):
    c = pe.client()
    with pytest.raises(NotFound) as ei:
        c.get_order(SYMBOL, client_order_id="never-placed")
    assert ei.value.code == -2013
    with pytest.raises(NotFound) as ei:
        c.cancel_order(SYMBOL, client_order_id="never-placed")
    assert ei.value.code == -2011


class _SharedBackoff:
    """A Backoff implementation as another process would see it (the protocol, not a mock)."""

    def __init__(self) -> None:
        self.until = 0.0

    def blocked_until(self) -> float:
        return self.until

    def block(self, until: float) -> None:
        self.until = max(self.until, until)


def test_429_raises_rate_limited_and_blocks_shared_backoff(pe):
    shared = _SharedBackoff()
    c, other = pe.client(backoff=shared), pe.client(backoff=shared)
    pe.post("/admin/faults", {"http_429": 1, "retry_after": 7})
    with pytest.raises(RateLimited) as ei:
        c.open_orders(SYMBOL)
    assert ei.value.retry_after == 7 and ei.value.http_status == 429
    assert shared.until > time.time() + 6
    weight = other.used_weight
    with pytest.raises(RateLimited) as ei:  # the fault is consumed: this one must not have been sent
        other.place_order(SYMBOL, "BUY", "MARKET", Decimal("0.001"), client_order_id="blocked")
    assert ei.value.http_status is None and other.used_weight == weight
    assert pe.get("/admin/orders") == []


def test_used_weight_is_tracked(pe):
    c = pe.client()
    c.open_orders(SYMBOL)
    first = c.used_weight
    c.open_orders(SYMBOL)
    assert first is not None and c.used_weight is not None and c.used_weight > first


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_secrets_never_in_repr_errors_or_logs(pe, caplog):
    caplog.set_level(logging.DEBUG)
    secret = "S3CRET-" + VECTOR_SECRET
    texts = []
    wrong = BinanceClient(pe.url, KEY, secret)
    texts.append(repr(wrong))
    dead = BinanceClient(f"http://127.0.0.1:{_free_port()}", KEY, secret, timeout=1.0)
    for client in (wrong, dead):
        with pytest.raises(BinanceError) as ei:
            client.place_order(SYMBOL, "BUY", "LIMIT", Decimal("0.001"), price=Decimal("90000"),
                               time_in_force="GTC", client_order_id="s1")
        err = ei.value
        texts += [str(err), repr(err), str(err.__cause__), repr(err.__cause__), repr(vars(err))]
        client.close()
    texts.append(caplog.text)
    for t in texts:
        assert secret not in t and VECTOR_SECRET not in t
    # The connection-refused case is known not to have executed.
    assert isinstance(err, Unreachable) and err.outcome_known


def test_exchange_info_filters_from_the_server(pe):
    f = pe.client().exchange_info(SYMBOL)
    assert (f.symbol, f.base_asset, f.quote_asset) == (SYMBOL, "BTC", "USDC")
    assert (f.tick_size, f.step_size, f.min_qty, f.min_notional) == (
        Decimal("0.01"), Decimal("0.00001"), Decimal("0.00001"), Decimal(5))


def test_legacy_min_notional_filter_is_read():
    from shared.adapters.binance_rest import _filters
    sym = {"symbol": "BTCUSDT", "baseAsset": "BTC", "quoteAsset": "USDT", "filters": [
        {"filterType": "PRICE_FILTER", "minPrice": "0.01", "maxPrice": "1000000", "tickSize": "0.01"},
        {"filterType": "LOT_SIZE", "minQty": "0.00001", "maxQty": "9000", "stepSize": "0.00001"},
        {"filterType": "MIN_NOTIONAL", "minNotional": "10.00000000"}]}
    assert _filters(sym).min_notional == Decimal(10)
