"""The USDT/USDC basis: SYMBOL priced at the feed's price x (1 + PAPER_BASIS_BPS/10000), the feed's own symbol
listed at the file's prices, the feed file unscaled. Real paper exchange over HTTP."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

import pytest
import requests

from shared.adapters.binance_rest import Rejected
from shared.adapters.market_files import load_bars
from services.paper_exchange.settings import SettingsError, from_env

from tests.pe_helpers import SYMBOL, Paper, paper_env

TICK = Decimal("0.01")
FEED = "BTCUSDT"


@pytest.fixture
def based(tmp_path):
    p = Paper(paper_env(tmp_path, PAPER_BASIS_BPS="-2.5"))
    yield p
    p.stop()


def _get(pe, path, **params):
    r = requests.get(pe.url + path, params=params, timeout=5)
    return r.status_code, r.json()


def _scaled(feed: Decimal, bps: str) -> Decimal:
    return (feed * (1 + Decimal(bps) / 10000)).quantize(TICK, rounding=ROUND_HALF_UP)


def test_both_symbols_listed_and_priced_through_the_basis(based):
    based.post("/admin/advance", {"points": 6})
    st = based.get("/admin/state")
    feed_last, last = Decimal(st["feed_last"]), Decimal(st["last"])
    assert last == _scaled(feed_last, "-2.5") and last != feed_last
    _, info = _get(based, "/api/v3/exchangeInfo")
    assert [s["symbol"] for s in info["symbols"]] == [SYMBOL, FEED]
    assert all(s["filters"] for s in info["symbols"])
    _, prices = _get(based, "/api/v3/ticker/price")
    assert {x["symbol"]: Decimal(x["price"]) for x in prices} == {SYMBOL: last, FEED: feed_last}
    _, books = _get(based, "/api/v3/ticker/bookTicker")
    by = {b["symbol"]: b for b in books}
    c = based.client()
    assert c.book_ticker(SYMBOL) == (Decimal(by[SYMBOL]["bidPrice"]), Decimal(by[SYMBOL]["askPrice"]))
    assert Decimal(by[FEED]["bidPrice"]) <= feed_last <= Decimal(by[FEED]["askPrice"])
    assert c.book_ticker(FEED)[0] == Decimal(by[FEED]["bidPrice"])


def test_fills_on_symbol_happen_at_the_scaled_price_and_the_feed_file_stays_unscaled(based, tmp_path):
    c = based.client()
    bid, ask = c.book_ticker(SYMBOL)
    o = c.place_order(SYMBOL, "BUY", "LIMIT", Decimal("0.001"), price=ask, time_in_force="GTC",
                      client_order_id="b1")
    assert o.status == "FILLED" and o.fills[0].price == ask
    based.post("/admin/advance", {"points": 8})
    feed_rows = load_bars(tmp_path / "feed" / "aggregated.csv")[0]
    market = {b.ts: b for b in load_bars(tmp_path / "market.aggregated.csv")[0]}
    assert feed_rows and all(market[b.ts] == b for b in feed_rows)


def test_admin_price_in_either_symbol(based):
    st = based.post("/admin/price", {"feed_price": "60000.00"})
    assert Decimal(st["feed_last"]) == Decimal("60000.00")
    assert Decimal(st["last"]) == Decimal("59985.00")
    st = based.price("59985.00")
    assert Decimal(st["feed_last"]) == Decimal("60000.00")


def test_orders_on_the_feed_symbol_are_refused_as_not_permitted(based):
    c = based.client()
    with pytest.raises(Rejected) as e:
        c.place_order(FEED, "BUY", "LIMIT", Decimal("0.001"), price=Decimal("50000"), time_in_force="GTC",
                      client_order_id="f1")
    assert e.value.code == -2010 and "not permitted" in str(e.value)
    info = next(s for s in _get(based, "/api/v3/exchangeInfo")[1]["symbols"] if s["symbol"] == FEED)
    assert info["isSpotTradingAllowed"] is False and info["isMarginTradingAllowed"] is False


def test_one_symbol_when_the_feed_symbol_is_symbol(tmp_path):
    p = Paper(paper_env(tmp_path, PAPER_FEED_SYMBOL=SYMBOL))
    try:
        _, info = _get(p, "/api/v3/exchangeInfo")
        assert [s["symbol"] for s in info["symbols"]] == [SYMBOL]
        _, prices = _get(p, "/api/v3/ticker/price")
        assert [x["symbol"] for x in prices] == [SYMBOL]
    finally:
        p.stop()


@pytest.mark.parametrize("env, name", [
    ({"PAPER_BASIS_BPS": "abc"}, "PAPER_BASIS_BPS"),
    ({"PAPER_BASIS_BPS": "5000"}, "PAPER_BASIS_BPS"),
    ({"PAPER_BASIS_BPS": "NaN"}, "PAPER_BASIS_BPS"),
    ({"PAPER_BASIS_BPS": "3", "PAPER_FEED_SYMBOL": "BTCUSDC"}, "PAPER_BASIS_BPS"),
    ({"PAPER_FEED_SYMBOL": "ETHUSDT"}, "PAPER_FEED_SYMBOL"),
    ({"PAPER_FEED_SYMBOL": "BTCXYZ"}, "PAPER_FEED_SYMBOL"),
])
def test_bad_basis_settings_name_the_variable(env, name):
    with pytest.raises(SettingsError, match=name):
        from_env(env)


def test_default_is_no_basis_with_btcusdt_listed():
    s = from_env({})
    assert s.basis_bps == 0 and s.feed_symbol == "BTCUSDT" and s.symbols == ("BTCUSDC", "BTCUSDT")
    assert from_env({"SYMBOL": "ETHUSDC"}).feed_symbol == "ETHUSDT"
    assert from_env({"SYMBOL": "BTCUSDT"}).symbols == ("BTCUSDT",)


def test_a_restart_keeps_both_prices(tmp_path):
    env = paper_env(tmp_path, PAPER_BASIS_BPS="4", PAPER_SNAPSHOT_EVERY="1000")
    p = Paper(env)
    p.post("/admin/advance", {"points": 5})
    before = p.get("/admin/state")
    p.server.app.stop()
    p.server.app.journal.close()  # a crash: no final snapshot, the journal holds the points
    p.server.httpd.shutdown()
    p.server.httpd.server_close()
    q = Paper(env)
    try:
        after = q.get("/admin/state")
        assert (after["last"], after["feed_last"]) == (before["last"], before["feed_last"])
        assert Decimal(after["last"]) == _scaled(Decimal(after["feed_last"]), "4")
    finally:
        q.stop()
