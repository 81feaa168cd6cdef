"""Orders the exchange expires (2026): self-trade prevention (EXPIRED_IN_MATCH: our own market order against our
resting take-profit) and the expiry reason (`expiryReason` / executionReport `eR`, e.g. the price range execution
rule), on the paper exchange, in the typed order updates, through user_stream onto the `orders` stream, and read by
Binance's official SDK."""
from __future__ import annotations

import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from binance_common.configuration import ConfigurationRestAPI
from binance_sdk_spot.spot import Spot
from websockets.sync.client import ClientConnection, connect

from services.paper_exchange.ws_api import WsApiServer
from shared.adapters.binance_rest import BinanceClient
from shared.domain.order_updates import OrderUpdate, from_execution_report, from_rest
from shared.domain.orders import expired_by_exchange
from tests.conformance_helpers import sdk_data, sdk_error
from tests.pe_helpers import KEY, SECRET, SYMBOL, Paper, paper_env, start_process
from tests.test_api_keys import _write_keys
from tests.test_user_stream import PaperProc, Service

Q = Decimal("0.01")


@pytest.fixture
def px(tmp_path: Path) -> Iterator[tuple[Paper, BinanceClient, ClientConnection]]:
    """A paper exchange with its WebSocket API, our client, and a subscribed user data stream connection."""
    p = Paper(paper_env(tmp_path))
    ws_server = WsApiServer(p.server.app, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{ws_server.start()}/ws-api/v3"
    c = p.client()
    with connect(url, open_timeout=5) as ws:
        params: dict[str, Any] = {"apiKey": KEY, "timestamp": int(time.time() * 1000)}
        params["signature"] = c.sign_payload("&".join(f"{k}={v}" for k, v in sorted(params.items())))
        ws.send(json.dumps({"id": 1, "method": "userDataStream.subscribe.signature", "params": params}))
        assert json.loads(ws.recv(timeout=5))["result"] == {"subscriptionId": 0}
        yield p, c, ws
    ws_server.stop()
    p.stop()


def _reports(ws: ClientConnection, want: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """executionReports until `want` of them are final (deadline `timeout`)."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while sum(1 for e in got if e["X"] not in ("NEW", "PARTIALLY_FILLED")) < want:
        ev = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic()))).get("event", {})
        if ev.get("e") == "executionReport":
            got.append(ev)
    return got


def test_our_market_buy_expires_our_resting_take_profit_and_its_stop(px):
    """Binance's default EXPIRE_MAKER: the resting take-profit is the maker our own market order would hit. It expires
    EXPIRED_IN_MATCH, and its OCO stop leg goes with it: the position has no stop any more."""
    p, c, ws = px
    bid, ask = c.book_ticker(SYMBOL)
    c.place_order(SYMBOL, "BUY", "MARKET", Q * 2, client_order_id="setup-buy")   # coins to sell
    lst = c.place_oco(SYMBOL, "SELL", Q, above_type="LIMIT_MAKER", above_price=ask + Decimal("0.01"),
                      below_type="STOP_LOSS_LIMIT", below_stop_price=bid - 100, below_price=bid - 110,
                      below_time_in_force="GTC", list_client_order_id="x-list", above_client_order_id="x-tp",
                      below_client_order_id="x-sl")
    assert len(lst.order_reports) == 2
    bid, ask = c.book_ticker(SYMBOL)
    m = c.place_order(SYMBOL, "BUY", "MARKET", Q, client_order_id="x-flat")
    assert m.status == "FILLED"                      # the taker trades with the market
    tp, sl = c.get_order(SYMBOL, client_order_id="x-tp"), c.get_order(SYMBOL, client_order_id="x-sl")
    assert tp.status == "EXPIRED_IN_MATCH" and tp.prevented_match_id >= 1 and tp.prevented_quantity == Q
    assert tp.executed_qty == 0 and tp.self_trade_prevention_mode == "EXPIRE_MAKER"
    assert sl.status == "EXPIRED" and expired_by_exchange(sl.status)   # the stop leg is gone too
    assert from_rest(tp).exec_type == "TRADE_PREVENTION"
    reports = {e["c"]: e for e in _reports(ws, 4) if e["X"] not in ("NEW",)}
    ev = reports["x-tp"]
    assert (ev["x"], ev["X"], ev["v"], ev["A"], ev["B"]) == ("TRADE_PREVENTION", "EXPIRED_IN_MATCH",
                                                             tp.prevented_match_id, "0.01000000", "0.01000000")
    u = from_execution_report(ev)
    assert (u.status, u.exec_type, u.prevented_match_id, u.prevented_qty) == (
        "EXPIRED_IN_MATCH", "TRADE_PREVENTION", tp.prevented_match_id, Q)
    assert reports["x-sl"]["X"] == "EXPIRED"


def test_exchange_expiry_reason_on_rest_and_stream(px):
    """The admin fault expires a resting stop with the price range execution rule's reason."""
    p, c, ws = px
    c.place_order(SYMBOL, "BUY", "MARKET", Q, client_order_id="setup-buy")
    bid, _ = c.book_ticker(SYMBOL)
    c.place_order(SYMBOL, "SELL", "STOP_LOSS_LIMIT", Q, price=bid - 110, stop_price=bid - 100, time_in_force="GTC",
                  client_order_id="e-sl")
    o = p.post("/admin/expire", {"client_order_id": "e-sl", "reason": "EXECUTION_RULE_PRICE_RANGE_EXCEEDED"})
    assert (o["status"], o["expiryReason"]) == ("EXPIRED", "EXECUTION_RULE_PRICE_RANGE_EXCEEDED")
    got = c.get_order(SYMBOL, client_order_id="e-sl")
    assert (got.status, got.expiry_reason) == ("EXPIRED", "EXECUTION_RULE_PRICE_RANGE_EXCEEDED")
    assert from_rest(got).expiry_reason == "EXECUTION_RULE_PRICE_RANGE_EXCEEDED"
    ev = next(e for e in _reports(ws, 2) if e["c"] == "e-sl" and e["X"] == "EXPIRED")
    assert ev["eR"] == "EXECUTION_RULE_PRICE_RANGE_EXCEEDED"
    assert from_execution_report(ev).expiry_reason == "EXECUTION_RULE_PRICE_RANGE_EXCEEDED"
    r = requests.post(p.url + "/admin/expire", json={"client_order_id": "e-sl", "reason": "NO_SUCH"}, timeout=5)
    assert r.status_code == 400 and "reason must be one of" in r.json()["error"]
    r = requests.post(p.url + "/admin/expire", json={"client_order_id": "e-sl"}, timeout=5)
    assert r.status_code == 400 and "-2011" in r.json()["error"]   # no longer open


@pytest.mark.parametrize("kind", ["ed25519", "rsa"])
def test_user_stream_with_a_key_file_puts_the_expiry_on_the_orders_stream(tmp_path, redis_url, kind):
    """user_stream subscribes with an Ed25519 / RSA key (userDataStream.subscribe.signature) and publishes the
    exchange's expiries, reason and prevented quantity included, on the `orders` stream the exit side reads."""
    priv, pub = _write_keys(tmp_path, kind, "acc")
    paper = PaperProc(tmp_path, PAPER_API_PUBLIC_KEY_FILE=pub)
    svc = Service(tmp_path, redis_url, paper, BINANCE_PRIVATE_KEY_FILE=priv, BINANCE_API_SECRET="")
    try:
        svc.start()
        svc.wait_subscribed(1)
        from shared.adapters.signing import config_signer
        c = BinanceClient(paper.url, KEY, "", signer=config_signer("", priv, ""))
        c.place_order(SYMBOL, "BUY", "MARKET", Q * 2, client_order_id="us-buy")
        bid, ask = c.book_ticker(SYMBOL)
        c.place_order(SYMBOL, "SELL", "STOP_LOSS_LIMIT", Q, price=bid - 110, stop_price=bid - 100,
                      time_in_force="GTC", client_order_id="us-sl")
        c.place_order(SYMBOL, "SELL", "LIMIT_MAKER", Q, price=ask + Decimal("0.01"), client_order_id="us-tp")
        paper.post("/admin/expire", {"client_order_id": "us-sl", "reason": "EXECUTION_RULE_PRICE_RANGE_EXCEEDED"})
        u = svc.wait_update("us-sl", "EXPIRED")
        assert isinstance(u, OrderUpdate) and u.expiry_reason == "EXECUTION_RULE_PRICE_RANGE_EXCEEDED"
        c.place_order(SYMBOL, "BUY", "MARKET", Q, client_order_id="us-flat")
        tp = svc.wait_update("us-tp", "EXPIRED_IN_MATCH")
        assert tp.exec_type == "TRADE_PREVENTION" and tp.prevented_qty == Q and tp.prevented_match_id >= 1
        ev = [e.data for e in svc.events("order_expired_by_exchange")]
        assert {(d["client_id"], d["status"], d["expiry_reason"]) for d in ev} >= {
            ("us-sl", "EXPIRED", "EXECUTION_RULE_PRICE_RANGE_EXCEEDED"), ("us-tp", "EXPIRED_IN_MATCH", "")}
    finally:
        svc.close()
        paper.kill()


# ---- conformance: Binance's official SDK reads STP and expiry fields strictly -----------------------------------

@pytest.fixture(scope="module")
def sdk(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    proc, url = start_process(paper_env(tmp_path_factory.mktemp("expiry-sdk"), PAPER_FSYNC="0"))
    conf = ConfigurationRestAPI(api_key=KEY, api_secret=SECRET, base_path=url, timeout=5000, retries=0)
    try:
        yield Spot(config_rest_api=conf).rest_api, url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_sdk_self_trade_prevention_modes(sdk):
    spot, url = sdk
    info = sdk_data(spot.exchange_info(symbol=SYMBOL)).symbols[0]
    assert info.default_self_trade_prevention_mode == "EXPIRE_MAKER"
    assert set(info.allowed_self_trade_prevention_modes) == {"NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"}
    book = sdk_data(spot.ticker_book_ticker(symbol=SYMBOL)).actual_instance
    ask = Decimal(book.ask_price)
    sdk_data(spot.new_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity=Q, new_client_order_id="s-buy"))
    sdk_data(spot.new_order(symbol=SYMBOL, side="SELL", type="LIMIT_MAKER", quantity=Q, price=ask + Decimal("0.01"),
                            new_client_order_id="s-tp"))
    taker = sdk_data(spot.new_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity=Q,
                                    new_client_order_id="s-take", self_trade_prevention_mode="EXPIRE_TAKER"))
    assert taker.status == "EXPIRED_IN_MATCH" and taker.fills == []
    # the SDK's new-order model has no preventedMatchId; its order query model has them and expiryReason
    q = sdk_data(spot.get_order(symbol=SYMBOL, orig_client_order_id="s-take"))
    assert q.status == "EXPIRED_IN_MATCH" and q.prevented_match_id >= 1 and Decimal(q.prevented_quantity) == Q
    maker = sdk_data(spot.get_order(symbol=SYMBOL, orig_client_order_id="s-tp"))
    assert maker.status == "NEW"                      # EXPIRE_TAKER: the resting order stays
    err = sdk_error(lambda: spot.new_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity=Q,
                                           self_trade_prevention_mode="DECREMENT"))
    assert err.status_code == -1013
    r = requests.post(url + "/admin/expire", json={"client_order_id": "s-tp", "reason": "EXCHANGE_CANCELED"},
                      timeout=5)
    assert r.status_code == 200
    gone = sdk_data(spot.get_order(symbol=SYMBOL, orig_client_order_id="s-tp"))
    assert (gone.status, gone.expiry_reason) == ("EXPIRED", "EXCHANGE_CANCELED")
