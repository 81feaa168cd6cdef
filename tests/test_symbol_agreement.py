"""One symbol/quote helper (shared.domain.symbol.split_symbol) and one parser of SYMBOL and its filters
(shared.config): the engine's settings, the watchdog's I13 assets, `executorctl report` and the real paper
exchange (over HTTP, read back by the engine's own BinanceClient) agree on every symbol, and refuse the same
bad values naming the same variable."""
from __future__ import annotations

from decimal import Decimal

import pytest

from services.executorctl.report import _assets
from services.paper_exchange.settings import SettingsError, from_env
from shared.config import ConfigError, default_feed_symbol, load_config, symbol_filters
from shared.domain.invariants import params_from_config
from shared.domain.symbol import quote_of, split_symbol
from tests.pe_helpers import Paper, paper_env


class _Ctx:
    def __init__(self, cfg) -> None:
        self.cfg = cfg


@pytest.mark.parametrize("symbol, base, quote", [
    ("BTCGBP", "BTC", "GBP"), ("ETHBTC", "ETH", "BTC"), ("BTCFDUSD", "BTC", "FDUSD"), ("BTCUSDC", "BTC", "USDC"),
    ("SOLBRL", "SOL", "BRL"), ("ETHDAI", "ETH", "DAI"),
])
def test_engine_watchdog_report_and_paper_split_a_symbol_alike(symbol, base, quote):
    cfg = load_config({"SYMBOL": symbol})
    assert split_symbol(symbol) == (base, quote) and quote_of(symbol) == quote
    assert params_from_config(cfg).assets == (base, quote)
    assert _assets(_Ctx(cfg)) == (base, quote)
    assert cfg.FEED_SYMBOL == default_feed_symbol(symbol) == f"{base}USDT"
    s = from_env({"SYMBOL": symbol})
    assert (s.symbol, s.base_asset, s.quote_asset, s.feed_symbol) == (symbol, base, quote, cfg.FEED_SYMBOL)
    f = symbol_filters(cfg)
    assert (s.tick_size, s.qty_step, s.min_qty, s.min_notional) == (f.tick_size, f.step_size, f.min_qty,
                                                                     f.min_notional)


@pytest.mark.parametrize("symbol", ["BTCGBP", "ETHBTC", "BTCFDUSD"])
def test_the_paper_exchange_lists_what_the_engine_accepts(tmp_path, symbol):
    """The paper exchange runs with SYMBOL (it refused BTCGBP before) and serves exchangeInfo that the engine's
    client reads back as the filters the settings give."""
    env = {"SYMBOL": symbol, "TICK_SIZE": "0.1", "QTY_STEP": "0.001", "MIN_QTY": "0.001", "MIN_NOTIONAL": "10"}
    cfg = load_config(env)
    p = Paper(paper_env(tmp_path, **env, PAPER_FEED_SYMBOL=cfg.FEED_SYMBOL))
    try:
        got = p.client().exchange_info(symbol)
    finally:
        p.stop()
    want = symbol_filters(cfg)
    assert (got.symbol, got.base_asset, got.quote_asset) == (want.symbol, want.base_asset, want.quote_asset)
    assert (got.tick_size, got.step_size, got.min_qty, got.min_notional) == (
        Decimal("0.1"), Decimal("0.001"), Decimal("0.001"), Decimal("10"))
    assert (want.tick_size, want.step_size, want.min_qty, want.min_notional) == (
        got.tick_size, got.step_size, got.min_qty, got.min_notional)


@pytest.mark.parametrize("var, value", [
    ("TICK_SIZE", "0"), ("TICK_SIZE", "abc"), ("QTY_STEP", "-0.001"), ("MIN_QTY", "-1"), ("MIN_NOTIONAL", "NaN"),
    ("SYMBOL", "btc usdc"),
])
def test_a_bad_symbol_setting_is_refused_by_both_naming_it(var, value):
    with pytest.raises(ConfigError, match=var):
        load_config({var: value})
    with pytest.raises(SettingsError, match=var):
        from_env({var: value})


def test_a_symbol_whose_quote_is_unknown():
    """The engine accepts it (its filters come from exchangeInfo; FEED_SYMBOL is then SYMBOL itself); the paper
    exchange, which must know the quote asset to keep balances, refuses it naming SYMBOL and the known quotes."""
    assert split_symbol("XYZ") == () and quote_of("XYZ") == ""
    assert load_config({"SYMBOL": "XYZ"}).FEED_SYMBOL == "XYZ"
    with pytest.raises(SettingsError, match="SYMBOL='XYZ'.*GBP"):
        from_env({"SYMBOL": "XYZ"})
