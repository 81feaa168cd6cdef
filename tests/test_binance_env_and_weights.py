"""BINANCE_ENV (live / Spot Testnet / Demo Mode URLs; explicit URLs win; unknown values stop start-up) and the
request weight a borrowing margin order costs on the paper exchange (6 vs 1500 UID weight)."""
from __future__ import annotations

import time
from urllib.parse import urlencode

import pytest
import requests

from shared.adapters.signing import HmacSigner
from shared.config import BINANCE_ENV_URLS, ConfigError, load_config
from tests.pe_helpers import KEY, SECRET, SYMBOL, Paper, paper_env


@pytest.mark.parametrize("env,rest,ws", [
    ("live", "https://api.binance.com", "wss://ws-api.binance.com:443/ws-api/v3"),
    ("testnet", "https://testnet.binance.vision", "wss://ws-api.testnet.binance.vision/ws-api/v3"),
    ("demo", "https://demo-api.binance.com", "wss://demo-ws-api.binance.com/ws-api/v3"),
])
def test_binance_env_sets_both_urls(env, rest, ws):
    cfg = load_config({"BINANCE_ENV": env.upper()})
    assert (cfg.BINANCE_ENV, cfg.BINANCE_BASE_URL, cfg.BINANCE_WS_URL) == (env, rest, ws)


def test_official_sdk_agrees_on_the_environment_urls():
    from binance_common import constants as c
    assert BINANCE_ENV_URLS == {"live": (c.SPOT_REST_API_PROD_URL, c.SPOT_WS_API_PROD_URL),
                                "testnet": (c.SPOT_REST_API_TESTNET_URL, c.SPOT_WS_API_TESTNET_URL),
                                "demo": (c.SPOT_REST_API_DEMO_URL, c.SPOT_WS_API_DEMO_URL)}


def test_explicit_urls_win_and_bad_values_stop_start_up():
    cfg = load_config({"BINANCE_ENV": "demo", "BINANCE_BASE_URL": "http://127.0.0.1:8817"})
    assert (cfg.BINANCE_BASE_URL, cfg.BINANCE_WS_URL) == ("http://127.0.0.1:8817",
                                                          "wss://demo-ws-api.binance.com/ws-api/v3")
    assert load_config({}).BINANCE_BASE_URL == "https://api.binance.com"   # the original's default
    with pytest.raises(ConfigError, match="BINANCE_ENV='prod' is not allowed; allowed: live, testnet, demo"):
        load_config({"BINANCE_ENV": "prod"})
    with pytest.raises(ConfigError, match="Spot Testnet has no margin"):
        load_config({"BINANCE_ENV": "testnet", "TRADE_MODE": "margin"})
    with pytest.raises(ConfigError, match="ORDER_COUNT_EXIT_RESERVE"):
        load_config({"ORDER_COUNT_EXIT_RESERVE": "100"})
    assert "BINANCE_PRIVATE_KEY_PASSPHRASE" not in str(
        {k: v for k, v in load_config({"BINANCE_PRIVATE_KEY_PASSPHRASE": "hunter2"}).redacted().items()
         if v == "hunter2"})


def test_borrowing_margin_orders_cost_1500_weight(tmp_path):
    p = Paper(paper_env(tmp_path, PAPER_BALANCES="USDC=100000,BTC=1", PAPER_MARGIN_LEVERAGE="3"))
    try:
        http = requests.Session()

        def order(cid: str, side_effect: str) -> int:
            q = urlencode({"symbol": SYMBOL, "side": "BUY", "type": "LIMIT", "timeInForce": "GTC",
                           "quantity": "0.01", "price": "1000.00", "newClientOrderId": cid,
                           "sideEffectType": side_effect, "timestamp": int(time.time() * 1000)})
            r = http.post(f"{p.url}/sapi/v1/margin/order?{q}&signature={HmacSigner(SECRET).sign(q)}",
                          headers={"X-MBX-APIKEY": KEY}, timeout=5)
            assert r.status_code == 200, r.text
            return int(r.headers["X-SAPI-USED-UID-WEIGHT-1M"])

        w0 = order("w-none", "NO_SIDE_EFFECT")
        w1 = order("w-auto", "AUTO_BORROW_REPAY")
        w2 = order("w-buy", "MARGIN_BUY")
        # a minute boundary between two calls restarts the count at the later request's own weight
        assert w0 == 6   # a fresh exchange: the first order alone
        assert w1 - w0 == 1500 or w1 == 1500
        assert w2 - w1 == 1500 or w2 == 1500
    finally:
        p.stop()
