"""Paper exchange settings, read once from the environment at start-up.

A bad value raises SettingsError naming the variable and what is allowed; `__main__` turns
that into an exit with the message.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path

import msgspec

from services.paper_exchange.flags import AccountFlags, flags_from_env
from shared.config import ConfigError, load_symbol_config, symbol_filters
from shared.domain.bars import BadRow, parse_ts
from shared.domain.symbol import KNOWN_QUOTES, SymbolFilters, split_symbol


class SettingsError(ValueError):
    """An environment variable has a value the paper exchange cannot use."""


class Settings(msgspec.Struct, frozen=True):
    """Everything the paper exchange is configured with. Money and filters are Decimal."""
    host: str = "127.0.0.1"
    port: int = 8899
    api_key: str = "paper-key"
    api_secret: str = "paper-secret"
    # PEM public key (RSA or Ed25519) registered for api_key: signatures are then checked with it, not the secret
    api_public_key_file: str = ""
    order_limit_10s: int = 100      # Binance's ORDERS rate limits (exchangeInfo rateLimits): -1015 over them
    order_limit_1d: int = 200_000
    stp_mode: str = "EXPIRE_MAKER"  # the symbol's defaultSelfTradePreventionMode
    symbol: str = "BTCUSDC"
    base_asset: str = "BTC"
    quote_asset: str = "USDC"
    tick_size: Decimal = Decimal("0.01")
    qty_step: Decimal = Decimal("0.00001")
    min_qty: Decimal = Decimal("0.00001")
    max_qty: Decimal = Decimal("9000")
    min_notional: Decimal = Decimal("5")
    min_price: Decimal = Decimal("0.01")
    max_price: Decimal = Decimal("1000000")
    market_csv: str = ""
    feed_csv: str = "var/feed/aggregated.csv"
    start_ts: int | None = None
    history_bars: int = 300
    speed: float = 1.0
    state_fn: str = "var/paper/paper_exchange.json"
    balances: dict[str, Decimal] = msgspec.field(default_factory=lambda: {"USDC": Decimal(10000), "BTC": Decimal(0)})
    fee_rate: Decimal = Decimal("0.001")
    bnb_price: Decimal = Decimal(600)   # quote per BNB: the commission's value in BNB when PAPER_BNB_BURN is on
    slippage_bps: Decimal = Decimal(1)
    spread_ticks: int = 1
    partial_fill_ratio: Decimal = Decimal(1)
    clock_redis_url: str = ""
    snapshot_every: int = 200
    margin_leverage: Decimal = Decimal(3)
    margin_interest_hourly: Decimal = Decimal(0)
    fsync: bool = True
    exec_prefix: str = "exec:"
    lockstep: bool = False  # REPLAY_LOCKSTEP: count user-data events for the lock-step replay (clock.py)
    ws_port: int = 8900  # WebSocket API (user data stream); PAPER_WS_PORT, default PAPER_PORT + 1, 0 = free port
    # The market file's own symbol (its prices are served unscaled) and SYMBOL's premium over it in basis
    # points: SYMBOL trades at feed price x (1 + basis_bps / 10000), rounded to the tick.
    feed_symbol: str = "BTCUSDC"
    basis_bps: Decimal = Decimal(0)
    # issue 22: what a live account can refuse (API key restrictions, canTrade, symbol status...): flags.py
    account_flags: AccountFlags = msgspec.field(default_factory=AccountFlags)
    # PAPER_PAGE_MAX: at most this many orders / executions per allOrders / myTrades answer, whatever the limit
    # asked (0: Binance's own maxima). A small page lets a short run prove that a client pages (report, issue 25).
    page_max: int = 0

    @property
    def symbols(self) -> tuple[str, ...]:
        """The listed symbols: SYMBOL first, then the feed's own symbol when it is another one."""
        return (self.symbol,) if self.feed_symbol == self.symbol else (self.symbol, self.feed_symbol)


def _symbol(env: Mapping[str, str]) -> SymbolFilters:
    """SYMBOL and its filters (TICK_SIZE, QTY_STEP, MIN_QTY, MIN_NOTIONAL) by the shared config's parsers, so
    the paper exchange lists what the engine accepts; the error names the variable."""
    try:
        return symbol_filters(load_symbol_config(env))
    except ConfigError as e:
        raise SettingsError(str(e)) from None


def _dec(env: Mapping[str, str], name: str, default: Decimal, positive: bool = True) -> Decimal:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = Decimal(raw)
    except ArithmeticError:
        v = Decimal("NaN")
    if not v.is_finite() or v < 0 or (positive and v == 0):
        kind = "a positive decimal" if positive else "a decimal >= 0"
        raise SettingsError(f"{name}={raw!r}: must be {kind}")
    return v


def _int(env: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        v = int(raw)
    except ValueError:
        v = lo - 1
    if not lo <= v <= hi:
        raise SettingsError(f"{name}={raw!r}: must be an integer from {lo} to {hi}")
    return v


def _bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}={env[name]!r}: must be one of 1, 0, true, false, yes, no, on, off")


def _speed(env: Mapping[str, str]) -> float:
    raw = env.get("PAPER_SPEED", "")
    if raw == "":
        return 1.0
    try:
        v = float(raw)  # a replay rate, not money: float is right here
    except ValueError:
        v = -1.0
    if not (0 <= v < 1e9):
        raise SettingsError(f"PAPER_SPEED={raw!r}: must be a number >= 0 (market seconds per wall second; 0 = manual)")
    return v


def _balances(env: Mapping[str, str], base: str, quote: str) -> dict[str, Decimal]:
    raw = env.get("PAPER_BALANCES", "")
    out = {quote: Decimal(10000), base: Decimal(0)}
    if raw == "":
        return out
    for part in raw.split(","):
        asset, _, amount = part.strip().partition("=")
        try:
            v = Decimal(amount)
        except ArithmeticError:
            v = Decimal(-1)
        if not asset.strip().isalnum() or not v.is_finite() or v < 0:
            raise SettingsError(f"PAPER_BALANCES={raw!r}: must be ASSET=amount pairs separated by commas, "
                                f"e.g. USDC=10000,BTC=0 (amounts >= 0)")
        out[asset.strip().upper()] = v
    return out


def _start_ts(env: Mapping[str, str]) -> int | None:
    raw = env.get("PAPER_START_TS", "")
    if raw == "":
        return None
    try:
        return parse_ts(raw)
    except BadRow as e:
        raise SettingsError(f"PAPER_START_TS={raw!r}: must be epoch seconds or ISO-8601 "
                            "(e.g. 2025-01-13T20:00:00Z)") from e


_MAX_BASIS_BPS = Decimal(1000)


def _basis(env: Mapping[str, str], symbol: str, feed_symbol: str) -> Decimal:
    """PAPER_BASIS_BPS: a decimal in [-1000, 1000]; only 0 when the feed symbol is SYMBOL itself."""
    raw = env.get("PAPER_BASIS_BPS", "").strip()
    if raw == "":
        return Decimal(0)
    try:
        v = Decimal(raw)
    except ArithmeticError:
        v = Decimal("NaN")
    if not v.is_finite() or abs(v) > _MAX_BASIS_BPS:
        raise SettingsError(f"PAPER_BASIS_BPS={raw!r}: must be a decimal number of basis points from -1000 to 1000 "
                            "(e.g. 1.5: SYMBOL trades 0.015% above the feed's prices)")
    if v != 0 and feed_symbol == symbol:
        raise SettingsError(f"PAPER_BASIS_BPS={raw!r}: must be 0 when PAPER_FEED_SYMBOL is SYMBOL ({symbol}): "
                            "a basis needs two symbols")
    return v


def _feed_symbol(env: Mapping[str, str], symbol: str, base: str) -> str:
    """PAPER_FEED_SYMBOL (default SYMBOL's base + USDT, e.g. BTCUSDT): the market file's symbol, same base asset."""
    raw = env.get("PAPER_FEED_SYMBOL", "").strip().upper() or f"{base}USDT"
    if (split_symbol(raw) or ("",))[0] != base:
        raise SettingsError(f"PAPER_FEED_SYMBOL={raw!r}: must be a symbol with SYMBOL's base asset {base} and a "
                            f"known quote asset ({', '.join(KNOWN_QUOTES)}), e.g. {base}USDT")
    return raw


def from_env(env: Mapping[str, str] | None = None) -> Settings:
    """Build Settings from `env` (default os.environ); raise SettingsError on a bad value."""
    env = os.environ if env is None else env
    f = _symbol(env)
    symbol, base, quote = f.symbol, f.base_asset, f.quote_asset
    ratio = _dec(env, "PAPER_PARTIAL_FILL_RATIO", Decimal(1))
    if ratio > 1:
        raise SettingsError(f"PAPER_PARTIAL_FILL_RATIO={env['PAPER_PARTIAL_FILL_RATIO']!r}: must be in (0, 1]")
    return Settings(
        host=env.get("PAPER_HOST", "127.0.0.1"), port=_int(env, "PAPER_PORT", 8899, 0, 65535),
        api_key=env.get("PAPER_API_KEY", "paper-key"), api_secret=env.get("PAPER_API_SECRET", "paper-secret"),
        api_public_key_file=_public_key_file(env),
        order_limit_10s=_int(env, "PAPER_ORDER_LIMIT_10S", 100, 1, 1_000_000_000),
        order_limit_1d=_int(env, "PAPER_ORDER_LIMIT_1D", 200_000, 1, 1_000_000_000),
        stp_mode=_stp_mode(env),
        symbol=symbol, base_asset=base, quote_asset=quote, tick_size=f.tick_size, qty_step=f.step_size,
        min_qty=f.min_qty, min_notional=f.min_notional, min_price=f.tick_size,
        market_csv=env.get("PAPER_MARKET_CSV", ""),
        feed_csv=env.get("PAPER_FEED_CSV") or env.get("AGG_CSV") or "var/feed/aggregated.csv",
        start_ts=_start_ts(env), history_bars=_int(env, "PAPER_HISTORY_BARS", 300, 0, 10_000_000),
        speed=_speed(env), state_fn=env.get("PAPER_STATE_FN", "var/paper/paper_exchange.json"),
        balances=_balances(env, base, quote), fee_rate=_dec(env, "PAPER_FEE_RATE", Decimal("0.001"), positive=False),
        bnb_price=_bnb_price(env),
        slippage_bps=_dec(env, "PAPER_SLIPPAGE_BPS", Decimal(1), positive=False),
        spread_ticks=_int(env, "PAPER_SPREAD_TICKS", 1, 0, 1_000_000), partial_fill_ratio=ratio,
        clock_redis_url=env.get("PAPER_CLOCK_REDIS_URL", ""),
        snapshot_every=_int(env, "PAPER_SNAPSHOT_EVERY", 200, 1, 1_000_000),
        margin_leverage=_dec(env, "PAPER_MARGIN_LEVERAGE", Decimal(3)),
        margin_interest_hourly=_dec(env, "PAPER_MARGIN_INTEREST_HOURLY", Decimal(0), positive=False),
        fsync=_bool(env, "PAPER_FSYNC", True),
        exec_prefix=env.get("EXEC_PREFIX", "exec:"),
        lockstep=_bool(env, "REPLAY_LOCKSTEP", False),
        ws_port=_ws_port(env),
        feed_symbol=(feed := _feed_symbol(env, symbol, base)), basis_bps=_basis(env, symbol, feed),
        account_flags=flags_from_env(env, _bool, _int, SettingsError),
        page_max=_int(env, "PAPER_PAGE_MAX", 0, 0, 1000),
    )


_BNB_PRICE_MAX = Decimal(1_000_000)


def _bnb_price(env: Mapping[str, str]) -> Decimal:
    """PAPER_BNB_PRICE: SYMBOL's quote per BNB, what a commission paid in BNB (PAPER_BNB_BURN=true) is converted at."""
    raw = env.get("PAPER_BNB_PRICE", "").strip()
    if not raw:
        return Decimal(600)
    try:
        v = Decimal(raw)
    except ArithmeticError:
        v = Decimal("NaN")
    if not v.is_finite() or not 0 < v <= _BNB_PRICE_MAX:
        raise SettingsError(f"PAPER_BNB_PRICE={raw!r}: must be a decimal number, 0 < PAPER_BNB_PRICE <= "
                            f"{_BNB_PRICE_MAX} (SYMBOL's quote asset per BNB, e.g. 600)")
    return v


# allowedSelfTradePreventionModes of the paper symbol (DECREMENT / TRANSFER are not modelled)
STP_MODES = ("NONE", "EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH")


def _stp_mode(env: Mapping[str, str]) -> str:
    """PAPER_STP_MODE: the symbol's defaultSelfTradePreventionMode (Binance's is EXPIRE_MAKER on its spot pairs)."""
    raw = env.get("PAPER_STP_MODE", "").strip().upper() or "EXPIRE_MAKER"
    if raw not in STP_MODES:
        raise SettingsError(f"PAPER_STP_MODE={env['PAPER_STP_MODE']!r}: must be one of {', '.join(STP_MODES)}")
    return raw


def _public_key_file(env: Mapping[str, str]) -> str:
    """PAPER_API_PUBLIC_KEY_FILE: a readable RSA or Ed25519 PEM public key, or '' (HMAC with PAPER_API_SECRET)."""
    from shared.adapters.signing import KeyFileError, load_public_key_verifier
    path = env.get("PAPER_API_PUBLIC_KEY_FILE", "").strip()
    if path:
        try:
            load_public_key_verifier(path)
        except KeyFileError as e:
            raise SettingsError(f"PAPER_API_PUBLIC_KEY_FILE={path!r}: {e}; must be an RSA or Ed25519 PEM public key "
                                f"file, or unset for HMAC with PAPER_API_SECRET") from None
    return path


def _ws_port(env: Mapping[str, str]) -> int:
    """PAPER_WS_PORT; by default PAPER_PORT + 1 (0 when PAPER_PORT is 0: a free port)."""
    http = _int(env, "PAPER_PORT", 8899, 0, 65535)
    return _int(env, "PAPER_WS_PORT", http + 1 if 0 < http < 65535 else 0, 0, 65535)


def market_csv_path(s: Settings) -> tuple[Path, str]:
    """The market file to replay and its label (real or synthetic)."""
    if s.market_csv:
        return Path(s.market_csv), f"market data: {Path(s.market_csv).name}"
    from shared.adapters.market_files import find_market_file
    return find_market_file(Path("../shared/data/market"), Path("var/market"))
