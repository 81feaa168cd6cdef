"""Ed25519 / RSA / HMAC API keys and percent-encoded signed payloads (Binance, 2026), against the paper exchange.

The paper exchange registers a public key for its API key (PAPER_API_PUBLIC_KEY_FILE) and verifies signatures as
Binance documents them; our client and Binance's official SDK sign with the private key (BINANCE_PRIVATE_KEY_FILE,
encrypted with BINANCE_PRIVATE_KEY_PASSPHRASE for RSA here); a wrong key is -1022. Since 2026-01-15 the payload
must be percent-encoded before it is signed (CHANGELOG 2025-12-17): a client order id with reserved characters
passes only when it was encoded first.
"""
from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import requests
from binance_common.configuration import ConfigurationRestAPI
from binance_sdk_spot.spot import Spot
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from websockets.sync.client import connect

from services.paper_exchange.ws_api import WsApiServer
from shared.adapters.binance_rest import BinanceClient, Rejected, encode_query
from shared.adapters.signing import HmacSigner, config_signer
from shared.config import ConfigError
from tests.conformance_helpers import sdk_data, sdk_error
from tests.pe_helpers import KEY, SECRET, SYMBOL, Paper, paper_env, start_process

Q = Decimal("0.001")
PASS = "correct horse battery staple"


def _write_keys(tmp: Path, kind: str, name: str, passphrase: str = "") -> tuple[str, str]:
    """(private PEM path, public PEM path) of a new key pair of `kind` ("ed25519" or "rsa")."""
    key = ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else rsa.generate_private_key(65537, 2048)
    enc = (serialization.BestAvailableEncryption(passphrase.encode()) if passphrase
           else serialization.NoEncryption())
    priv, pub = tmp / f"{name}.pem", tmp / f"{name}.pub.pem"
    priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, enc))
    pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
    return str(priv), str(pub)


@pytest.fixture(params=["ed25519", "rsa"])
def keyed(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A paper exchange whose API key is an Ed25519 or RSA key (its WebSocket API too), and the key files."""
    kind = request.param
    passphrase = PASS if kind == "rsa" else ""
    priv, pub = _write_keys(tmp_path, kind, "account", passphrase)
    other, _ = _write_keys(tmp_path, kind, "stranger")
    p = Paper(paper_env(tmp_path, PAPER_API_PUBLIC_KEY_FILE=pub))
    ws = WsApiServer(p.server.app, "127.0.0.1", 0)
    port = ws.start()
    try:
        yield {"kind": kind, "paper": p, "priv": priv, "pass": passphrase, "other": other,
               "ws": f"ws://127.0.0.1:{port}/ws-api/v3"}
    finally:
        ws.stop()
        p.stop()


def _client(p: Paper, priv: str, passphrase: str) -> BinanceClient:
    # the secret is not needed with a key file: an empty one proves it is not used
    return BinanceClient(p.url, KEY, "", signer=config_signer("", priv, passphrase))


def test_our_client_signs_with_the_key_file_and_a_wrong_key_is_refused(keyed):
    p = keyed["paper"]
    c = _client(p, keyed["priv"], keyed["pass"])
    assert c.key_type == {"ed25519": "ED25519", "rsa": "RSA"}[keyed["kind"]]
    bid, _ = c.book_ticker(SYMBOL)
    o = c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="k-1")
    assert c.get_order(SYMBOL, client_order_id="k-1").order_id == o.order_id
    for wrong in (BinanceClient(p.url, KEY, "", signer=config_signer("", keyed["other"], "")),
                  BinanceClient(p.url, KEY, SECRET)):  # another key of the same type; the HMAC secret
        with pytest.raises(Rejected) as ei:
            wrong.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="k-2")
        assert ei.value.code == -1022
    assert [x.client_order_id for x in c.open_orders(SYMBOL)] == ["k-1"]  # the refused ones were not placed


def test_official_sdk_signs_with_ed25519_and_rsa_keys(keyed):
    p = keyed["paper"]
    conf = ConfigurationRestAPI(api_key=KEY, private_key=keyed["priv"], private_key_passphrase=keyed["pass"] or None,
                                base_path=p.url, timeout=5000, retries=0)
    spot = Spot(config_rest_api=conf).rest_api
    bid = Decimal(sdk_data(spot.ticker_book_ticker(symbol=SYMBOL)).actual_instance.bid_price)
    o = sdk_data(spot.new_order(symbol=SYMBOL, side="BUY", type="LIMIT", time_in_force="GTC", quantity=Q,
                                price=bid - 100, new_client_order_id="sdk-k1"))
    assert (o.status, o.client_order_id) == ("NEW", "sdk-k1")
    wrong = ConfigurationRestAPI(api_key=KEY, private_key=keyed["other"], base_path=p.url, timeout=5000, retries=0)
    err = sdk_error(lambda: Spot(config_rest_api=wrong).rest_api.get_open_orders(symbol=SYMBOL))
    assert err.status_code == -1022


def _ws_call(ws: Any, method: str, params: dict[str, Any]) -> dict[str, Any]:
    ws.send(json.dumps({"id": method, "method": method, "params": params}))
    deadline = time.monotonic() + 5
    while True:
        msg = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if msg.get("id") == method:
            return msg


def _ws_signed(signer: Any) -> dict[str, Any]:
    params: dict[str, Any] = {"apiKey": KEY, "timestamp": int(time.time() * 1000), "recvWindow": 5000}
    payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))  # not percent-encoded on the WS API
    return {**params, "signature": signer.sign(payload)}


def test_ws_api_signature_subscription_and_ed25519_session_logon(keyed):
    signer = config_signer("", keyed["priv"], keyed["pass"])
    wrong = config_signer("", keyed["other"], "")
    with connect(keyed["ws"], open_timeout=5) as ws:
        assert _ws_call(ws, "userDataStream.subscribe.signature", _ws_signed(wrong))["error"]["code"] == -1022
        assert _ws_call(ws, "userDataStream.subscribe.signature", _ws_signed(signer))["result"] == {
            "subscriptionId": 0}
        logon = _ws_call(ws, "session.logon", _ws_signed(signer))
        if keyed["kind"] == "ed25519":  # Binance: session.logon takes Ed25519 keys only
            assert logon["result"]["apiKey"] == KEY
        else:
            assert logon["error"]["code"] == -1022


def test_ed25519_session_logon_then_subscribe(tmp_path):
    priv, pub = _write_keys(tmp_path, "ed25519", "acc")
    p = Paper(paper_env(tmp_path, PAPER_API_PUBLIC_KEY_FILE=pub))
    ws_server = WsApiServer(p.server.app, "127.0.0.1", 0)
    url = f"ws://127.0.0.1:{ws_server.start()}/ws-api/v3"
    try:
        with connect(url, open_timeout=5) as ws:
            assert _ws_call(ws, "userDataStream.subscribe", {})["status"] == 401
            assert _ws_call(ws, "session.logon", _ws_signed(config_signer("", priv, "")))["result"]["apiKey"] == KEY
            assert _ws_call(ws, "userDataStream.subscribe", {})["result"] == {"subscriptionId": 0}
            c = _client(p, priv, "")
            bid, _ = c.book_ticker(SYMBOL)
            c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="lg-e")
            deadline = time.monotonic() + 5
            while True:
                msg = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
                ev = msg.get("event", {})
                if ev.get("e") == "executionReport" and ev.get("c") == "lg-e":
                    break
    finally:
        ws_server.stop()
        p.stop()


def test_bad_key_settings_stop_start_up_naming_the_variable(tmp_path):
    priv, _ = _write_keys(tmp_path, "rsa", "enc", PASS)
    with pytest.raises(ConfigError, match="BINANCE_PRIVATE_KEY_FILE"):
        config_signer("", priv, "wrong passphrase")
    with pytest.raises(ConfigError, match="BINANCE_PRIVATE_KEY_FILE"):
        config_signer("", priv, "")
    with pytest.raises(ConfigError, match="BINANCE_PRIVATE_KEY_FILE"):
        config_signer("", str(tmp_path / "missing.pem"), "")
    assert config_signer(SECRET, "", "").key_type == "HMAC"


# ---- percent-encoding before signing ----------------------------------------------------------------------------

def test_encode_query_matches_binance_example():
    """rest-api.md's HMAC example: the non-ASCII symbol percent-encoded, then signed."""
    q = encode_query([("symbol", "１２３４５６"), ("side", "BUY"), ("type", "LIMIT"), ("timeInForce", "GTC"),
                      ("quantity", "1"), ("price", "0.1"), ("recvWindow", "5000"), ("timestamp", "1499827319559")])
    assert q == ("symbol=%EF%BC%91%EF%BC%92%EF%BC%93%EF%BC%94%EF%BC%95%EF%BC%96&side=BUY&type=LIMIT&"
                 "timeInForce=GTC&quantity=1&price=0.1&recvWindow=5000&timestamp=1499827319559")
    secret = "NhqPtmdSJYdKjVHjA7PZj4Mge3R5YNiP1e3UZjInClVN65XAbvqqM6A7H5fATj0j"
    assert HmacSigner(secret).sign(q) == "e1353ec6b14d888f1164ae9af8228a3dbd508bc82eb867db8ab6046442f33ef3"


@pytest.fixture
def hmac_paper(tmp_path: Path) -> Iterator[Paper]:
    p = Paper(paper_env(tmp_path))
    yield p
    p.stop()


def test_reserved_characters_in_a_client_order_id_pass_only_when_encoded_before_signing(hmac_paper):
    p = hmac_paper
    c = p.client()
    bid, _ = c.book_ticker(SYMBOL)
    cid = "tp:1/a.b"  # ':' and '/' are reserved; Binance's newClientOrderId allows them
    o = c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id=cid)
    assert o.client_order_id == cid and c.get_order(SYMBOL, client_order_id=cid).order_id == o.order_id
    signer = HmacSigner(SECRET)
    raw = f"symbol={SYMBOL}&orderId={o.order_id}&origClientOrderId={cid}&timestamp={int(time.time() * 1000)}"
    enc = raw.replace(cid, quote(cid, safe=""))
    http = requests.Session()
    headers = {"X-MBX-APIKEY": KEY}

    def get(query: str, sig: str) -> requests.Response:
        return http.get(f"{p.url}/api/v3/order?{query}&signature={sig}", headers=headers, timeout=5)

    # signed before encoding, sent encoded (a client whose HTTP library encodes after signing): refused
    assert get(enc, signer.sign(raw)).json()["code"] == -1022
    # signed and sent without encoding the reserved characters: refused
    assert get(raw, signer.sign(raw)).json()["code"] == -1022
    # encoded, then signed over exactly the bytes sent: accepted
    ok = get(enc, signer.sign(enc))
    assert ok.status_code == 200 and ok.json()["clientOrderId"] == cid


def test_official_sdk_percent_encodes_reserved_characters(tmp_path):
    proc, url = start_process(paper_env(tmp_path, PAPER_FSYNC="0"))
    try:
        spot = Spot(config_rest_api=ConfigurationRestAPI(api_key=KEY, api_secret=SECRET, base_path=url,
                                                         timeout=5000, retries=0)).rest_api
        bid = Decimal(sdk_data(spot.ticker_book_ticker(symbol=SYMBOL)).actual_instance.bid_price)
        o = sdk_data(spot.new_order(symbol=SYMBOL, side="BUY", type="LIMIT", time_in_force="GTC", quantity=Q,
                                    price=bid - 100, new_client_order_id="sdk:1/x.y"))
        assert o.client_order_id == "sdk:1/x.y"
        assert sdk_data(spot.get_order(symbol=SYMBOL, orig_client_order_id="sdk:1/x.y")).order_id == o.order_id
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_rsa_signature_is_percent_encoded_base64(tmp_path):
    """RSA/Ed25519 signatures are base64 ('+', '/', '='): the client percent-encodes them into the query."""
    priv, pub = _write_keys(tmp_path, "rsa", "r")
    signer = config_signer("", priv, "")
    c = BinanceClient("http://127.0.0.1:9", KEY, "", signer=signer)
    q = c._encode({"symbol": SYMBOL}, signed=True)
    sig = q.rsplit("&signature=", 1)[1]
    assert "+" not in sig and "/" not in sig and "=" not in sig
    assert len(base64.b64decode(sig.replace("%2B", "+").replace("%2F", "/").replace("%3D", "="))) == 256


def test_a_bad_key_file_stops_the_process_at_start_up(tmp_path, redis_url):
    """user_stream with an encrypted key and no passphrase: exit 2, the variable named, nothing secret printed."""
    import os
    import subprocess
    import sys
    priv, _ = _write_keys(tmp_path, "ed25519", "enc", PASS)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("BINANCE_")}, "REDIS_URL": redis_url,
           "EXEC_PREFIX": "badkey:", "BINANCE_BASE_URL": "http://127.0.0.1:9", "BINANCE_API_KEY": KEY,
           "BINANCE_PRIVATE_KEY_FILE": priv, "STATE_FN": str(tmp_path / "state.json"),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    r = subprocess.run([sys.executable, "-m", "services.user_stream"], env=env, capture_output=True, text=True,
                       timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 2, r.stderr[-2000:]
    assert "configuration error: BINANCE_PRIVATE_KEY_FILE=" in r.stderr and "passphrase" in r.stderr
    assert "BEGIN" not in r.stderr + r.stdout
