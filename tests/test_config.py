"""Config: the original names and defaults; a bad value stops start-up naming the variable."""
from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from shared.config import ConfigError, load_config

HOME = Path(__file__).resolve().parents[1]


def test_defaults_are_the_originals():
    c = load_config({})
    assert (c.COOLDOWN_SEC, c.LOCK_SEC, c.DEDUP_PRICE_DECIMALS, c.MAX_PEAK_AGE_SEC) == (180, 15, 1, 600)
    assert c.QTY_USD == Decimal("100.0") and c.TICK_SIZE == Decimal("0.01") and c.QTY_STEP == Decimal("0.00001")
    assert c.TP_R_LIST == (Decimal(1), Decimal(2)) and c.ENTRY_MODE == "LIMIT_THEN_MARKET"
    assert c.TRAIL_SWING_BUFFER_USD == Decimal("15.0") and c.SL_LIMIT_GAP_TICKS == 2
    assert c.STATE_FN == "/data/state/executor_state.json" and c.TRADE_MODE == "spot"
    assert isinstance(c.QTY_USD, Decimal) and isinstance(c.SL_PCT, Decimal)


def test_values_are_parsed_and_aliases_accepted():
    c = load_config({"ENTRY_MODE": "market_only", "STRICT_SOURCE": "no", "TP_R_LIST": "1.5, 3",
                     "I13_KILL_ON_DEBT": "true", "MARGIN_ISOLATED": "TRUE"})
    assert c.ENTRY_MODE == "MARKET_ONLY" and c.STRICT_SOURCE is False and c.INVAR_KILL_ON_DEBT is True
    assert c.TP_R_LIST == (Decimal("1.5"), Decimal(3)) and c.MARGIN_ISOLATED is True


@pytest.mark.parametrize("env,needle", [
    ({"TRADE_MODE": "futures"}, "TRADE_MODE='futures' is not allowed; allowed: spot, margin"),
    ({"ENTRY_MODE": "yolo"}, "ENTRY_MODE='YOLO' is not allowed; allowed: LIMIT_ONLY, LIMIT_THEN_MARKET, MARKET_ONLY"),
    ({"QTY_USD": "a lot"}, "QTY_USD='a lot' is not a decimal number"),
    ({"COOLDOWN_SEC": "1.5"}, "COOLDOWN_SEC='1.5' is not an integer"),
    ({"STRICT_SOURCE": "maybe"}, "STRICT_SOURCE='maybe' is not a boolean"),
    ({"QTY_USD": "-5"}, "QTY_USD=-5 must be > 0"),
    ({"TP_R_LIST": "2,1"}, "TP_R_LIST=2,1 must be two increasing"),
    ({"TRADE_MODE": "margin", "MARGIN_BORROW_MODE": "manual", "MARGIN_SIDE_EFFECT": "AUTO_BORROW_REPAY"},
     "MARGIN_SIDE_EFFECT=AUTO_BORROW_REPAY conflicts with MARGIN_BORROW_MODE=manual"),
    ({"TRADE_MODE": "margin", "MARGIN_BORROW_MODE": "auto", "MARGIN_SIDE_EFFECT": "NO_SIDE_EFFECT"},
     "allowed with auto: AUTO_BORROW_REPAY, MARGIN_BUY"),
])
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(ConfigError) as e:
        load_config(env)
    assert needle in str(e.value)


def test_a_service_refuses_to_start_on_a_bad_setting():
    env = {**os.environ, "PYTHONPATH": str(HOME), "ENTRY_MODE": "SOMETIMES", "REDIS_URL": "redis://127.0.0.1:1/0"}
    p = subprocess.run([sys.executable, "-m", "services.position_engine"], cwd=HOME, env=env, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2
    assert "ENTRY_MODE='SOMETIMES' is not allowed; allowed: LIMIT_ONLY, LIMIT_THEN_MARKET, MARKET_ONLY" in p.stderr


def test_secrets_are_redacted():
    c = load_config({"BINANCE_API_KEY": "k-123", "BINANCE_API_SECRET": "s-456", "N8N_BASIC_AUTH_PASSWORD": "pw",
                     "REDIS_URL": "redis://:hunter2@localhost:6379/0"})
    text = repr(c.redacted())
    for secret in ("k-123", "s-456", "hunter2", "'pw'"):
        assert secret not in text
    assert "localhost:6379" in text


def test_feed_symbol_follows_symbol_unless_set():
    assert load_config({}).FEED_SYMBOL == "BTCUSDT"                      # the original's BTCUSDT for BTCUSDC
    assert load_config({"SYMBOL": "ETHUSDC"}).FEED_SYMBOL == "ETHUSDT"   # never ETH re-priced off BTC's book
    assert load_config({"FEED_SYMBOL": ""}).FEED_SYMBOL == ""            # the feed is in SYMBOL's prices
    assert load_config({"SKIP_TP1_BELOW_FEES": "true"}).SKIP_TP1_BELOW_FEES is True
    with pytest.raises(ConfigError, match="FEED_SYMBOL"):
        load_config({"FEED_SYMBOL": "btc usdt"})


@pytest.mark.parametrize("value", ["", " ", "btc usdc", "BTC/USDC", "X" * 21])
def test_a_blank_or_malformed_symbol_stops_start_up_naming_symbol(value):
    with pytest.raises(ConfigError) as e:
        load_config({"SYMBOL": value})
    assert str(e.value).startswith(f"SYMBOL={value!r} is not a symbol; allowed:")


def test_trade_mode_margin_alone_is_a_valid_margin_setup():
    """The defaults MARGIN_BORROW_MODE=manual and MARGIN_SIDE_EFFECT=AUTO_BORROW_REPAY conflict when read
    literally: unset, the side effect follows the borrow mode (manual -> NO_SIDE_EFFECT, auto -> the default
    AUTO_BORROW_REPAY); an explicit conflicting value still stops start-up (test above)."""
    c = load_config({"TRADE_MODE": "margin"})
    assert (c.MARGIN_BORROW_MODE, c.MARGIN_SIDE_EFFECT) == ("manual", "NO_SIDE_EFFECT")
    c = load_config({"TRADE_MODE": "margin", "MARGIN_BORROW_MODE": "auto"})
    assert (c.MARGIN_BORROW_MODE, c.MARGIN_SIDE_EFFECT) == ("auto", "AUTO_BORROW_REPAY")
    c = load_config({"TRADE_MODE": "margin", "MARGIN_BORROW_MODE": "auto", "MARGIN_SIDE_EFFECT": "margin_buy"})
    assert c.MARGIN_SIDE_EFFECT == "MARGIN_BUY"


@pytest.mark.parametrize("service", ["position_engine", "exit_manager", "user_stream"])
def test_an_unknown_symbol_stops_start_up_naming_symbol(service, tmp_path, redis_url, market_file, market_bars):
    """The exchange (the real paper exchange, listing BTCUSDC) does not list ETHUSDC: each service that talks to
    the exchange stops at start-up with exit 2 and a message naming SYMBOL, instead of retrying forever."""
    from tests.stack import Stack
    s = Stack(tmp_path, redis_url, market_file, market_bars[500].ts)
    try:
        s.start("paper_exchange")
        from tests.redis_helpers import wait_until
        wait_until(s._paper_up, 20, 0.02, "paper exchange")
        env = {**s.env, "SYMBOL": "ETHUSDC"}
        p = subprocess.run([sys.executable, "-m", f"services.{service}"], cwd=HOME, env=env, capture_output=True,
                           text=True, timeout=60)
    finally:
        s.stop_all()
    assert p.returncode == 2, (p.returncode, p.stderr[-2000:])
    assert "SYMBOL='ETHUSDC' is not listed by the exchange" in p.stderr, p.stderr[-2000:]


# ---- issue 21: bounds on every numeric setting, live is explicit ------------------------------------------

@pytest.mark.parametrize("env,needle", [
    ({"STREAM_MAXLEN": "0"}, "STREAM_MAXLEN=0 is out of range; allowed: 1000 <= STREAM_MAXLEN <= 1000000000"),
    ({"STREAM_MAXLEN": "999"}, "STREAM_MAXLEN=999 is out of range"),
    ({"RECV_WINDOW": "999999"}, "RECV_WINDOW=999999 is out of range; allowed: 1 <= RECV_WINDOW <= 60000"),
    ({"RECV_WINDOW": "0"}, "RECV_WINDOW=0 must be > 0"),
    ({"QTY_USD": "1e9"}, "QTY_USD=1E+9 is out of range; allowed: 1E-8 <= QTY_USD <= MAX_QTY_USD=10000"),
    ({"QTY_USD": "20000", "MAX_QTY_USD": "15000"}, "QTY_USD=20000 is out of range"),
    ({"BINANCE_TIMEOUT_SEC": "0"}, "BINANCE_TIMEOUT_SEC=0.0 must be > 0"),
    ({"BINANCE_TIMEOUT_SEC": "600"}, "BINANCE_TIMEOUT_SEC=600.0 is out of range; allowed: 0.1 <= "),
    ({"MAX_SIGNAL_DEVIATION_PCT": "5"}, "MAX_SIGNAL_DEVIATION_PCT=5 is out of range; allowed: 0.0001 <= "),
    ({"MAX_SIGNAL_DEVIATION_PCT": "0"}, "MAX_SIGNAL_DEVIATION_PCT=0 is out of range"),
    ({"MARGIN_BORROW_BUFFER_PCT": "3"}, "MARGIN_BORROW_BUFFER_PCT=3 is out of range"),
    ({"COMMAND_TTL_SEC": "0"}, "COMMAND_TTL_SEC=0 is out of range; allowed: 1 <= COMMAND_TTL_SEC <= 86400"),
    ({"DEDUP_PRICE_DECIMALS": "12"}, "DEDUP_PRICE_DECIMALS=12 is out of range; allowed: 0 <="),
    ({"HEARTBEAT_TTL_SEC": "1"}, "HEARTBEAT_TTL_SEC=1 is out of range"),
    ({"MAX_PEAK_AGE_SEC": "0"}, "MAX_PEAK_AGE_SEC=0 must be > 0"),
    ({"REST_POLL_MS": "1"}, "REST_POLL_MS=1 is out of range"),
    ({"MANAGE_EVERY_SEC": "0"}, "MANAGE_EVERY_SEC=0 is out of range"),
    ({"ORPHAN_CANCEL_EVERY_SEC": "0"}, "ORPHAN_CANCEL_EVERY_SEC=0 is out of range"),
    ({"TAIL_LINES": "0"}, "TAIL_LINES=0 is out of range"),
    ({"INVAR_FEED_STALE_SEC": "0"}, "INVAR_FEED_STALE_SEC=0 is out of range"),
])
def test_out_of_range_values_name_the_variable_and_the_range(env, needle):
    with pytest.raises(ConfigError) as e:
        load_config(env)
    assert needle in str(e.value)


def test_every_bound_accepts_its_ends_and_the_defaults_are_inside():
    from shared.config import BOUNDS
    c = load_config({})
    for name, lo, hi, _what in BOUNDS:
        top = getattr(c, hi) if isinstance(hi, str) else hi
        assert lo <= getattr(c, name) <= top, name
    assert load_config({"STREAM_MAXLEN": "1000", "RECV_WINDOW": "60000", "QTY_USD": "10000"}).RECV_WINDOW == 60000
    assert load_config({"MAX_QTY_USD": "50000", "QTY_USD": "50000"}).QTY_USD == Decimal(50000)


LIVE = {"BINANCE_BASE_URL": "https://api.binance.com", "BINANCE_API_KEY": "k" * 64, "BINANCE_API_SECRET": "s" * 64}


@pytest.mark.parametrize("env,needle", [
    ({**LIVE, "CLOCK": "replay"}, "CLOCK=replay is refused with BINANCE_BASE_URL=https://api.binance.com"),
    ({**LIVE, "BINANCE_BASE_URL": "https://testnet.binance.vision", "CLOCK": "replay", "REPLAY_LOCKSTEP": "1"},
     "CLOCK=replay is refused"),
    ({**LIVE, "BINANCE_BASE_URL": "http://10.0.0.5:8899", "CLOCK": "replay"}, "CLOCK=replay is refused"),
    ({**LIVE, "BINANCE_API_KEY": ""}, "BINANCE_API_KEY is empty with BINANCE_BASE_URL=https://api.binance.com"),
    ({**LIVE, "BINANCE_API_KEY": "paper-key"}, "BINANCE_API_KEY is a paper exchange key"),
    ({**LIVE, "BINANCE_API_SECRET": "paper-secret"}, "BINANCE_API_SECRET is a paper exchange key"),
    ({**LIVE, "BINANCE_API_SECRET": "  "}, "BINANCE_API_SECRET is empty"),
])
def test_live_is_explicit(env, needle):
    with pytest.raises(ConfigError) as e:
        load_config(env)
    assert needle in str(e.value)


def test_the_paper_exchange_on_loopback_keeps_the_replay_clock_and_paper_keys():
    for url in ("http://127.0.0.1:8899", "http://localhost:8899", "http://[::1]:8899", "http://127.0.0.2:1"):
        c = load_config({"BINANCE_BASE_URL": url, "CLOCK": "replay", "REPLAY_LOCKSTEP": "true",
                         "BINANCE_API_KEY": "paper-key", "BINANCE_API_SECRET": "paper-secret"})
        assert c.CLOCK == "replay" and c.REPLAY_LOCKSTEP
    assert load_config(LIVE).CLOCK == "wall"   # live with the wall clock and real keys starts
    assert load_config({}).CLOCK == "wall"     # a process with no keys in its environment (ingest, notifier)


def test_a_signing_service_without_keys_refuses_a_real_exchange():
    """position_engine started against a real exchange URL with no key in its environment: exit 2 naming the
    variable, before any request leaves (REDIS_URL points nowhere: the refusal comes first)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("BINANCE_")}
    env.update({"PYTHONPATH": str(HOME), "BINANCE_BASE_URL": "https://api.binance.com", "CLOCK": "wall",
                "REDIS_URL": "redis://127.0.0.1:1/0"})
    p = subprocess.run([sys.executable, "-m", "services.position_engine"], cwd=HOME, env=env, capture_output=True,
                       text=True, timeout=30)
    assert p.returncode == 2, p.stderr[-2000:]
    assert "BINANCE_API_KEY is empty with BINANCE_BASE_URL=https://api.binance.com" in p.stderr
