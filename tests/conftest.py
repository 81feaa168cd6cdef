"""Shared fixtures: a real redis-server per test module, real market rows, the real stack."""
from __future__ import annotations

from pathlib import Path

import pytest
import redis

from decimal import Decimal

from shared.domain.moments import find_moment
from shared.adapters.market_files import find_market_file, load_bars
from shared.config import load_config
from shared.domain.symbol import SymbolFilters
from tests.redis_helpers import redis_server

HOME = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def market_file() -> Path:
    """The market data every test replays: real files in ../shared/data/market, else the seeded synthetic one."""
    path, _label = find_market_file(HOME.parent / "shared" / "data" / "market", HOME / "var" / "market")
    return path


@pytest.fixture(scope="session")
def market_bars(market_file: Path):
    bars, _bad = load_bars(market_file)
    return bars


@pytest.fixture(scope="session")
def moment(market_bars):
    """A moment in the market data where a long with the default settings runs through TP1, TP2 and a
    trailing exit (the demo's own finder), so integration tests replay a whole real trade."""
    cfg = load_config({})
    f = SymbolFilters(cfg.SYMBOL, "BTC", "USDC", cfg.TICK_SIZE, cfg.QTY_STEP, cfg.MIN_QTY, Decimal(9000), cfg.MIN_NOTIONAL)
    return find_moment(market_bars, cfg, f)


@pytest.fixture(scope="module")
def redis_url():
    with redis_server() as url:
        yield url


@pytest.fixture()
def r(redis_url):
    """A connection to the module's redis-server, emptied for each test."""
    conn = redis.Redis.from_url(redis_url)
    conn.flushdb()
    yield conn
    conn.close()
