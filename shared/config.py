"""One typed Config built from the environment at start-up, keeping the original product's names and defaults.

A bad value stops start-up with ConfigError naming the variable and what is allowed. Secrets are kept in
the struct but never printed: `Config.redacted()` is what goes to logs.
"""
from __future__ import annotations

import ipaddress
import os
from decimal import Decimal, InvalidOperation
from typing import Callable, Mapping
from urllib.parse import urlsplit

import msgspec

from shared.domain.symbol import KNOWN_QUOTES, SymbolFilters, split_symbol


class ConfigError(ValueError):
    """A setting has a value that is not allowed. The message names the variable and the allowed values."""


SECRET_FIELDS = frozenset({"BINANCE_API_KEY", "BINANCE_API_SECRET", "N8N_BASIC_AUTH_PASSWORD", "REDIS_URL",
                           "N8N_WEBHOOK_URL", "REDIS_VIEWER_URL", "DASHBOARD_TOKEN",
                           "BINANCE_PRIVATE_KEY_PASSPHRASE"})
# Settings that are URLs whose credentials (user:password@) or path (webhook tokens) are secret.
_URL_SECRETS = {"REDIS_URL": "userinfo", "N8N_WEBHOOK_URL": "path", "REDIS_VIEWER_URL": "userinfo"}


class Config(msgspec.Struct, frozen=True, kw_only=True):
    """Every setting of every process. Field names are the environment variable names."""
    # files and infrastructure
    DELTASCOUT_LOG: str = "/data/logs/deltascout.log"
    AGG_CSV: str = "/data/feed/aggregated.csv"
    STATE_FN: str = "/data/state/executor_state.json"
    EXEC_LOG: str = "/data/logs/executor.log"
    LOG_MAX_LINES: int = 200
    TAIL_LINES: int = 80
    REDIS_URL: str = "redis://127.0.0.1:6379/0"
    EXEC_PREFIX: str = "exec:"
    CLOCK: str = "wall"
    REPLAY_LOCKSTEP: bool = False   # with CLOCK=replay: acknowledge each market time (shared/adapters/lockstep.py)
    STREAM_MAXLEN: int = 100_000
    HEARTBEAT_TTL_SEC: int = 10
    WATCHDOG_PROCESSES: tuple[str, ...] = ("signal_ingest", "position_engine", "exit_manager", "notifier",
                                           "user_stream")
    REST_POLL_MS: int = 250        # REST fallback polling of order status (weight budget: see README)
    REST_WEIGHT_BUDGET_PER_MIN: int = 1200   # position_engine: REST weight/min its fallback polling may use
    EXIT_REST_WEIGHT_BUDGET_PER_MIN: int = 3000   # exit_manager: REST weight/min its order polling may use
    EXIT_REST_SWEEP_SEC: float = 5.0   # exit_manager: REST safety sweep of its orders while the stream is healthy
    # signals
    COOLDOWN_SEC: int = 180
    LOCK_SEC: int = 15
    DEDUP_PRICE_DECIMALS: int = 1
    MAX_PEAK_AGE_SEC: int = 600
    MAX_SIGNAL_DEVIATION_PCT: Decimal = Decimal("0.05")   # issue 21: a signal x k further than this from SYMBOL's mid is ignored
    STRICT_SOURCE: bool = True
    SEEN_KEYS_MAX: int = 500
    MAX_LINE_BYTES: int = 65536
    LOG_ROTATE_IDLE_SEC: float = 30.0   # issue 15: a renamed (rotated) log is read until idle this long, then closed
    # symbol and sizing
    SYMBOL: str = "BTCUSDC"
    QTY_USD: Decimal = Decimal("100.0")
    MAX_QTY_USD: Decimal = Decimal("10000")   # issue 21: fat-finger cap, QTY_USD above it stops start-up
    QTY_STEP: Decimal = Decimal("0.00001")
    MIN_QTY: Decimal = Decimal("0.00001")
    MIN_NOTIONAL: Decimal = Decimal("5.0")
    TICK_SIZE: Decimal = Decimal("0.01")
    ENTRY_OFFSET_USD: Decimal = Decimal("0.5")
    SL_PCT: Decimal = Decimal("0.002")
    SWING_MINS: int = 180
    TP_R_LIST: tuple[Decimal, ...] = (Decimal(1), Decimal(2))
    FEED_SYMBOL: str = "BTCUSDT"   # AGG_CSV's symbol (unset: SYMBOL's base + USDT); plans re-priced by mid(SYMBOL)/mid(it)
    SKIP_TP1_BELOW_FEES: bool = False   # skip a signal whose TP1 gain does not pay the round trip's commission
    POLL_SEC: float = 5.0
    # notifications
    N8N_WEBHOOK_URL: str = ""
    N8N_BASIC_AUTH_USER: str = ""
    N8N_BASIC_AUTH_PASSWORD: str = ""
    TELEGRAM_CHAT_ID: str = ""   # issue 24: also alert this Telegram chat (the bot token is the notifier's env only)
    # the operator's window (issue 24): read-only processes
    REDIS_VIEWER_URL: str = ""   # metrics + dashboard read Redis as this (read-only) user; unset: REDIS_URL
    METRICS_BIND: str = "127.0.0.1"
    METRICS_PORT: int = 9108
    METRICS_CACHE_SEC: float = 1.0   # one reading of Redis + exchange serves every scrape within this window
    DASHBOARD_BIND: str = "127.0.0.1"
    DASHBOARD_PORT: int = 9118
    DASHBOARD_TOKEN: str = ""    # required unless the stack is the local paper one (exchange on loopback)
    # exchange
    BINANCE_BASE_URL: str = "https://api.binance.com"
    BINANCE_WS_URL: str = "wss://ws-api.binance.com:443/ws-api/v3"   # WebSocket API (user_stream)
    USER_STREAM_CHECK_SEC: float = 10.0   # user_stream: REST cross-check of the stream every N seconds
    BINANCE_ENV: str = "live"   # live | testnet | demo: sets BINANCE_BASE_URL and BINANCE_WS_URL unless they are set
    BINANCE_API_KEY: str = ""
    BINANCE_API_SECRET: str = ""
    BINANCE_PRIVATE_KEY_FILE: str = ""   # RSA or Ed25519 PEM private key (type read from the PEM); then no secret
    BINANCE_PRIVATE_KEY_PASSPHRASE: str = ""   # the key file's passphrase, when it is encrypted
    ORDER_COUNT_LIMIT_10S: int = 100   # Binance's ORDERS rate limit per 10 s (exchangeInfo rateLimits)
    ORDER_COUNT_LIMIT_1D: int = 200_000   # ... and per day
    ORDER_COUNT_EXIT_RESERVE: int = 10   # orders of each window kept for exits: entries wait, stops never
    BINANCE_TIMEOUT_SEC: float = 5.0
    TRADE_MODE: str = "spot"
    RECV_WINDOW: int = 5000
    MARGIN_ISOLATED: bool = False
    MARGIN_SIDE_EFFECT: str = "AUTO_BORROW_REPAY"
    MARGIN_AUTO_REPAY_AT_CANCEL: bool = False
    MARGIN_BORROW_MODE: str = "manual"
    MARGIN_BORROW_BUFFER_PCT: Decimal = Decimal("0.003")   # manual borrow: extra over the plan's need
    # entry
    LIVE_VALIDATE_ONLY: bool = False
    LIVE_ENTRY_TIMEOUT_SEC: int = 90
    ENTRY_MODE: str = "LIMIT_THEN_MARKET"
    PLANB_MAX_DEV_R_MULT: Decimal = Decimal("0.25")
    PLANB_MAX_DEV_USD: Decimal = Decimal("0.0")
    PLANB_REQUIRE_PRICE: bool = True
    PLANB_ABORT_IF_PAST_TP1: bool = True
    # exits
    EXITS_RETRY_EVERY_SEC: int = 15
    FAILSAFE_FLATTEN: bool = False
    FAILSAFE_EXITS_MAX_TRIES: int = 5
    FAILSAFE_EXITS_GRACE_SEC: int = 60   # market s since the first refusal before the failsafe flatten
    STOP_IMMEDIATE_ACTION: str = "flatten"   # a stop that would trigger at placement: flatten | nearest
    EXIT_FEE_RATE_FALLBACK: Decimal = Decimal("0.001")   # exits: commission rate when the account does not say
    LIVE_STATUS_POLL_EVERY: int = 10
    MANAGE_EVERY_SEC: int = 15
    SL_WATCHDOG_GRACE_SEC: int = 3
    SL_WATCHDOG_RETRY_SEC: int = 5
    TRAIL_ACTIVATE_AFTER_TP2: bool = True
    TRAIL_STEP_USD: Decimal = Decimal("20.0")
    TRAIL_UPDATE_EVERY_SEC: int = 20
    SL_LIMIT_GAP_TICKS: int = 2
    TRAIL_SOURCE: str = "AGG"
    TRAIL_CONFIRM_BUFFER_USD: Decimal = Decimal("0.0")
    TRAIL_SWING_LOOKBACK: int = 240
    TRAIL_SWING_LR: int = 2
    TRAIL_SWING_BUFFER_USD: Decimal = Decimal("15.0")
    TP1_BE_MAX_ATTEMPTS: int = 5
    TP1_BE_COOLDOWN_SEC: int = 300
    # invariants / watchdog
    INVAR_ENABLED: bool = True
    INVAR_EVERY_SEC: int = 20
    INVAR_THROTTLE_SEC: int = 600
    INVAR_GRACE_SEC: int = 15
    INVAR_FEED_STALE_SEC: int = 180
    INVAR_KILL_ON_DEBT: bool = False
    INVAR_PERSIST: bool = False
    I13_GRACE_SEC: int = 300
    I13_ESCALATE_SEC: int = 180
    I13_EXCHANGE_CHECK: bool = True
    I13_EXCHANGE_MIN_INTERVAL_SEC: int = 60
    I13_CLEAR_STATE_ON_EXCHANGE_CLEAR: bool = False
    I2_BE_TOLERANCE_USD: Decimal = Decimal("0.1")
    MARGIN_DEBT_EPS: Decimal = Decimal("0.0")
    ORPHAN_CANCEL_EVERY_SEC: int = 30
    RECON_THROTTLE_SEC: int = 600
    SNAPSHOT_MIN_SEC: int = 5
    # operator commands (issue 21)
    COMMAND_TTL_SEC: int = 60   # executorctl: a command expires this long (stack clock) after it was written
    # issue 22: loss limits that latch (0 = off; the original has none, so all are off by default)
    MAX_DAILY_LOSS_USD: Decimal = Decimal(0)   # realised net PnL of the UTC day at or below minus this halts entries
    MAX_CONSECUTIVE_LOSSES: int = 0            # that many losing trades in a row halts new entries
    MAX_TRADES_PER_DAY: int = 0                # that many closed trades in the UTC day halts new entries

    def redacted(self) -> dict[str, object]:
        """All settings as a dict with secrets replaced, safe for logs."""
        out = msgspec.structs.asdict(self)
        for k in SECRET_FIELDS:
            if out.get(k):
                out[k] = _redact_url(str(out[k]), _URL_SECRETS[k]) if k in _URL_SECRETS else "***"
        return {k: (str(v) if isinstance(v, Decimal) else v) for k, v in out.items()}

    def key(self, name: str) -> str:
        """A Redis key with the configured prefix."""
        return f"{self.EXEC_PREFIX}{name}"

    def viewer_redis_url(self) -> str:
        """The Redis URL of the read-only processes (metrics, dashboard): REDIS_VIEWER_URL, else REDIS_URL."""
        return self.REDIS_VIEWER_URL or self.REDIS_URL


def _redact_url(url: str, part: str) -> str:
    scheme, rest = url.split("://", 1) if "://" in url else ("", url)
    host = rest.split("@", 1)[1] if "@" in rest else rest
    if part == "path":
        return f"{scheme}://{host.split('/', 1)[0].split('@')[-1]}/***"
    return f"{scheme}://***@{host}" if "@" in rest else url


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

CHOICES: dict[str, tuple[str, ...]] = {
    "TRADE_MODE": ("spot", "margin"),
    "MARGIN_BORROW_MODE": ("manual", "auto"),
    "MARGIN_SIDE_EFFECT": ("NO_SIDE_EFFECT", "MARGIN_BUY", "AUTO_REPAY", "AUTO_BORROW_REPAY"),
    "ENTRY_MODE": ("LIMIT_ONLY", "LIMIT_THEN_MARKET", "MARKET_ONLY"),
    # TRAIL_SOURCE: AGG (the feed's swings; the original falls back to the book's mid when the feed gives none)
    # or BINANCE (the original: any value but AGG). Parsed here for the exit manager, which wires the fallback.
    "TRAIL_SOURCE": ("AGG", "BINANCE"),
    "CLOCK": ("wall", "replay"),
    "STOP_IMMEDIATE_ACTION": ("flatten", "nearest"),
    "BINANCE_ENV": ("live", "testnet", "demo"),
}
# Variables read case-insensitively, as the original did for these.
_UPPER_CHOICES = {"MARGIN_SIDE_EFFECT", "ENTRY_MODE", "TRAIL_SOURCE"}
_LOWER_CHOICES = {"TRADE_MODE", "MARGIN_BORROW_MODE", "CLOCK", "STOP_IMMEDIATE_ACTION", "BINANCE_ENV"}
# The seed guide calls INVAR_KILL_ON_DEBT "I13_KILL_ON_DEBT": accept both names.
ALIASES = {"I13_KILL_ON_DEBT": "INVAR_KILL_ON_DEBT"}


def _parse_bool(name: str, raw: str) -> bool:
    v = raw.strip().lower()
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise ConfigError(f"{name}={raw!r} is not a boolean; allowed: 1/0, true/false, yes/no, on/off")


def _parse_int(name: str, raw: str) -> int:
    try:
        return int(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not an integer") from None


def _parse_float(name: str, raw: str) -> float:
    try:
        return float(raw.strip())
    except ValueError:
        raise ConfigError(f"{name}={raw!r} is not a number") from None


def _parse_decimal(name: str, raw: str) -> Decimal:
    try:
        d = Decimal(raw.strip())
    except InvalidOperation:
        raise ConfigError(f"{name}={raw!r} is not a decimal number") from None
    if not d.is_finite():
        raise ConfigError(f"{name}={raw!r} must be finite")
    return d


def _parse_str_list(name: str, raw: str) -> tuple[str, ...]:
    return tuple(p.strip() for p in raw.split(",") if p.strip())


def _parse_decimal_list(name: str, raw: str) -> tuple[Decimal, ...]:
    parts = [p for p in raw.replace(";", ",").split(",") if p.strip()]
    if not parts:
        raise ConfigError(f"{name}={raw!r} must be a comma-separated list of numbers, e.g. 1,2")
    return tuple(_parse_decimal(name, p) for p in parts)


def _parser_for(annotation: object) -> Callable[[str, str], object]:
    return {
        bool: _parse_bool, int: _parse_int, float: _parse_float, Decimal: _parse_decimal,
        str: lambda _n, raw: raw, tuple[Decimal, ...]: _parse_decimal_list, tuple[str, ...]: _parse_str_list,
    }[annotation]  # type: ignore[index]


def _read_raw(env: Mapping[str, str]) -> dict[str, str]:
    raw = {k: v for k, v in env.items()}
    for alias, name in ALIASES.items():
        if alias in raw and name not in raw:
            raw[name] = raw[alias]
    return raw


def load_config(env: Mapping[str, str] | None = None) -> Config:
    """Build the Config from `env` (default os.environ); raise ConfigError naming the bad variable."""
    raw = _read_raw(os.environ if env is None else env)
    values = _parse_fields(raw)
    if "FEED_SYMBOL" not in raw:
        values["FEED_SYMBOL"] = default_feed_symbol(str(values.get("SYMBOL", Config().SYMBOL)))
    _margin_side_effect_default(raw, values)
    _binance_env_urls(raw, values)
    cfg = Config(**values)
    validate(cfg)
    if "BINANCE_API_KEY" in raw or "BINANCE_API_SECRET" in raw:
        # a process that does not sign gets no keys at all (issue 21, secrets where they are used); one that
        # does is checked again when it builds its client (Runtime.client -> require_live_keys)
        require_live_keys(cfg)
    return cfg


def _parse_fields(raw: Mapping[str, str], names: frozenset[str] | None = None) -> dict[str, object]:
    """The Config fields present in `raw` (all, or those in `names`), each by its type's parser."""
    values: dict[str, object] = {}
    for field in msgspec.structs.fields(Config):
        if field.name not in raw or (names is not None and field.name not in names):
            continue
        text = raw[field.name]
        if field.name in _UPPER_CHOICES:
            text = text.strip().upper()
        elif field.name in _LOWER_CHOICES:
            text = text.strip().lower()
        values[field.name] = _parser_for(field.type)(field.name, text)
    return values


# SYMBOL and its filters: what a process that trades no plan (the paper exchange) reads of the Config.
SYMBOL_FIELDS = frozenset({"SYMBOL", "TICK_SIZE", "QTY_STEP", "MIN_QTY", "MIN_NOTIONAL"})


def load_symbol_config(env: Mapping[str, str]) -> Config:
    """A Config with only SYMBOL and its filters read from `env` (same parsers and checks as `load_config`; the
    other settings keep their defaults, unread); ConfigError names the bad variable."""
    cfg = Config(**_parse_fields(_read_raw(env), SYMBOL_FIELDS))
    _positive(cfg, "TICK_SIZE", "QTY_STEP")
    _non_negative(cfg, "MIN_QTY", "MIN_NOTIONAL")
    _validate_symbol(cfg)
    return cfg


def symbol_filters(cfg: Config, max_qty: Decimal = Decimal(9000)) -> SymbolFilters:
    """SYMBOL's filters as the settings give them (the demo, the paper exchange, benchmarks: no exchangeInfo);
    ConfigError naming SYMBOL when its quote is not one of KNOWN_QUOTES."""
    parts = split_symbol(cfg.SYMBOL)
    if not parts:
        raise ConfigError(f"SYMBOL={cfg.SYMBOL!r} cannot be split into base and quote; allowed quote assets: "
                          f"{', '.join(KNOWN_QUOTES)}")
    return SymbolFilters(cfg.SYMBOL, parts[0], parts[1], cfg.TICK_SIZE, cfg.QTY_STEP, cfg.MIN_QTY, max_qty,
                         cfg.MIN_NOTIONAL)


def default_feed_symbol(symbol: str) -> str:
    """The feed's symbol when FEED_SYMBOL is not set: SYMBOL's base asset against USDT (the original's BTCUSDT for
    BTCUSDC); SYMBOL itself when its quote is unknown."""
    parts = split_symbol(symbol)
    return f"{parts[0]}USDT" if parts else symbol.strip().upper()


def _positive(cfg: Config, *names: str) -> None:
    for n in names:
        if getattr(cfg, n) <= 0:
            raise ConfigError(f"{n}={getattr(cfg, n)} must be > 0")


def _non_negative(cfg: Config, *names: str) -> None:
    for n in names:
        if getattr(cfg, n) < 0:
            raise ConfigError(f"{n}={getattr(cfg, n)} must be >= 0")


def validate(cfg: Config) -> None:
    """Cross-field checks: choices, ranges and the trade-mode combinations."""
    for name, allowed in CHOICES.items():
        if getattr(cfg, name) not in allowed:
            raise ConfigError(f"{name}={getattr(cfg, name)!r} is not allowed; allowed: {', '.join(allowed)}")
    _positive(cfg, "QTY_USD", "QTY_STEP", "TICK_SIZE", "SL_PCT", "RECV_WINDOW", "INVAR_EVERY_SEC",
              "TRAIL_UPDATE_EVERY_SEC", "EXITS_RETRY_EVERY_SEC", "FAILSAFE_EXITS_MAX_TRIES", "TRAIL_SWING_LR",
              "SEEN_KEYS_MAX", "MAX_LINE_BYTES", "HEARTBEAT_TTL_SEC", "MAX_PEAK_AGE_SEC", "BINANCE_TIMEOUT_SEC",
              "TP1_BE_MAX_ATTEMPTS", "REST_POLL_MS")
    _non_negative(cfg, "MIN_QTY", "MIN_NOTIONAL", "ENTRY_OFFSET_USD", "COOLDOWN_SEC", "LOCK_SEC",
                  "DEDUP_PRICE_DECIMALS", "SWING_MINS", "PLANB_MAX_DEV_R_MULT", "PLANB_MAX_DEV_USD",
                  "TRAIL_SWING_BUFFER_USD", "TRAIL_CONFIRM_BUFFER_USD", "SL_LIMIT_GAP_TICKS",
                  "LIVE_ENTRY_TIMEOUT_SEC", "MARGIN_BORROW_BUFFER_PCT", "I2_BE_TOLERANCE_USD", "MARGIN_DEBT_EPS", "TP1_BE_COOLDOWN_SEC",
                  "FAILSAFE_EXITS_GRACE_SEC", "EXIT_FEE_RATE_FALLBACK")
    if cfg.EXIT_FEE_RATE_FALLBACK >= 1:
        raise ConfigError(f"EXIT_FEE_RATE_FALLBACK={cfg.EXIT_FEE_RATE_FALLBACK} must be a fraction below 1 "
                          f"(0.001 = 0.1 %)")
    if cfg.TRAIL_STEP_USD <= 0:   # README difference 19: the original read 0 as its default step
        raise ConfigError(f"TRAIL_STEP_USD={cfg.TRAIL_STEP_USD} must be > 0 (the original read 0 as its default "
                          f"20: set 20 for that)")
    if cfg.SL_PCT >= 1:
        raise ConfigError(f"SL_PCT={cfg.SL_PCT} must be a fraction below 1 (0.002 = 0.2 %)")
    if len(cfg.TP_R_LIST) != 2 or not (0 < cfg.TP_R_LIST[0] < cfg.TP_R_LIST[1]):
        raise ConfigError(f"TP_R_LIST={','.join(map(str, cfg.TP_R_LIST))} must be two increasing positive R "
                          f"multiples, e.g. 1,2")
    if not cfg.EXEC_PREFIX or any(c.isspace() for c in cfg.EXEC_PREFIX):
        raise ConfigError(f"EXEC_PREFIX={cfg.EXEC_PREFIX!r} must be a non-empty string without spaces")
    if not 8 <= cfg.REST_WEIGHT_BUDGET_PER_MIN <= 6000:
        raise ConfigError(f"REST_WEIGHT_BUDGET_PER_MIN={cfg.REST_WEIGHT_BUDGET_PER_MIN} must be 8..6000 "
                          f"(request weight a minute; Binance allows 6000 per IP)")
    if not 8 <= cfg.EXIT_REST_WEIGHT_BUDGET_PER_MIN <= 6000:
        raise ConfigError(f"EXIT_REST_WEIGHT_BUDGET_PER_MIN={cfg.EXIT_REST_WEIGHT_BUDGET_PER_MIN} must be 8..6000 "
                          f"(request weight a minute; Binance allows 6000 per IP)")
    _positive(cfg, "EXIT_REST_SWEEP_SEC", "METRICS_CACHE_SEC")
    for name in ("METRICS_PORT", "DASHBOARD_PORT"):
        if not 1 <= getattr(cfg, name) <= 65535:
            raise ConfigError(f"{name}={getattr(cfg, name)} must be a TCP port (1..65535)")
    _validate_original_settings(cfg)
    _validate_symbol(cfg)
    if cfg.FEED_SYMBOL and not (cfg.FEED_SYMBOL.isalnum() and cfg.FEED_SYMBOL.isupper()):
        raise ConfigError(f"FEED_SYMBOL={cfg.FEED_SYMBOL!r} must be a Binance symbol in capitals (e.g. BTCUSDT), "
                          f"or empty when AGG_CSV is in SYMBOL's own prices")
    _non_negative(cfg, "LOG_ROTATE_IDLE_SEC")
    _validate_margin(cfg)
    _validate_order_count(cfg)
    if cfg.REPLAY_LOCKSTEP and cfg.CLOCK != "replay":
        raise ConfigError("REPLAY_LOCKSTEP=true needs CLOCK=replay (live trading never waits for a replay driver)")
    _validate_bounds(cfg)
    _validate_live_clock(cfg)


def _validate_margin(cfg: Config) -> None:
    if cfg.TRADE_MODE != "margin":
        return
    if cfg.MARGIN_BORROW_MODE == "manual" and cfg.MARGIN_SIDE_EFFECT != "NO_SIDE_EFFECT":
        raise ConfigError(f"MARGIN_SIDE_EFFECT={cfg.MARGIN_SIDE_EFFECT} conflicts with MARGIN_BORROW_MODE=manual; "
                          f"allowed with manual: NO_SIDE_EFFECT")
    if cfg.MARGIN_BORROW_MODE == "auto" and cfg.MARGIN_SIDE_EFFECT not in ("AUTO_BORROW_REPAY", "MARGIN_BUY"):
        raise ConfigError(f"MARGIN_SIDE_EFFECT={cfg.MARGIN_SIDE_EFFECT} conflicts with MARGIN_BORROW_MODE=auto; "
                          f"allowed with auto: AUTO_BORROW_REPAY, MARGIN_BUY")


# ---- issue 15: SYMBOL and the margin defaults ---------------------------------------------------------------
# Binance's symbol pattern (exchangeInfo / order endpoints): ^[A-Z0-9-_.]{1,20}$
_SYMBOL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def _validate_symbol(cfg: Config) -> None:
    """SYMBOL must look like a Binance symbol; whether the exchange lists it is checked at start-up against
    exchangeInfo by the services that trade (shared.service_loop.wait_for_filters)."""
    sym = cfg.SYMBOL
    if not sym or len(sym) > 20 or any(c not in _SYMBOL_CHARS for c in sym):
        raise ConfigError(f"SYMBOL={sym!r} is not a symbol; allowed: 1-20 capital letters, digits, '-', '_' or '.' "
                          f"(e.g. BTCUSDC)")


def _margin_side_effect_default(raw: Mapping[str, str], values: dict[str, object]) -> None:
    """MARGIN_SIDE_EFFECT's default (AUTO_BORROW_REPAY) is the side effect of MARGIN_BORROW_MODE=auto, where the
    exchange borrows and repays. With the default MARGIN_BORROW_MODE=manual the executor borrows and repays
    itself and every order goes out NO_SIDE_EFFECT (the original's I11 and its margin example say so). So when
    MARGIN_SIDE_EFFECT is not set, it follows the borrow mode; an explicit value that conflicts still stops
    start-up."""
    if "MARGIN_SIDE_EFFECT" in raw:
        return
    default_mode = next(f.default for f in msgspec.structs.fields(Config) if f.name == "MARGIN_BORROW_MODE")
    if values.get("MARGIN_BORROW_MODE", default_mode) == "manual":
        values["MARGIN_SIDE_EFFECT"] = "NO_SIDE_EFFECT"


# ---- issue 21: bounds on every numeric setting that can break the product --------------------------------
# (name, lowest, highest, why): both ends allowed. Lower bounds of 0 / > 0 are checked above (_positive,
# _non_negative); these are the ranges beyond which a value breaks the product or cannot be meant.
_DAY = 86_400
BOUNDS: tuple[tuple[str, object, object, str], ...] = (
    ("STREAM_MAXLEN", 1000, 10**9, "entries kept per stream; below 1000 XADD trims signals and hand-overs "
                                         "before they are read"),
    ("RECV_WINDOW", 1, 60_000, "ms; Binance allows at most 60000"),
    ("BINANCE_TIMEOUT_SEC", 0.1, 120, "s per exchange call"),
    ("HEARTBEAT_TTL_SEC", 2, 3600, "s"),
    ("REST_POLL_MS", 10, 60_000, "ms"),
    ("EXIT_REST_SWEEP_SEC", 0.1, 3600, "s"),
    ("USER_STREAM_CHECK_SEC", 0.1, 3600, "s"),
    ("POLL_SEC", 0.01, 3600, "s"),
    ("LOG_MAX_LINES", 0, 10_000_000, "lines of EXEC_LOG kept; 0 = all"),
    ("TAIL_LINES", 1, 100_000, "lines"),
    ("MAX_LINE_BYTES", 256, 16 * 1024 * 1024, "bytes"),
    ("SEEN_KEYS_MAX", 1, 1_000_000, "keys"),
    ("DEDUP_PRICE_DECIMALS", 0, 8, "decimals"),
    ("COOLDOWN_SEC", 0, 7 * _DAY, "s"),
    ("LOCK_SEC", 0, _DAY, "s"),
    ("LOG_ROTATE_IDLE_SEC", 0, _DAY, "s"),
    ("MAX_SIGNAL_DEVIATION_PCT", Decimal("0.0001"), Decimal("0.5"), "a fraction: 0.05 = 5 %"),
    ("MAX_QTY_USD", Decimal("1"), Decimal("100000000"), "quote per trade"),
    ("QTY_USD", Decimal("0.00000001"), "MAX_QTY_USD", "quote per trade; raise MAX_QTY_USD to trade more"),
    ("MARGIN_BORROW_BUFFER_PCT", Decimal(0), Decimal("0.5"), "a fraction: 0.003 = 0.3 %"),
    ("SWING_MINS", 0, 7 * 1440, "minutes"),
    ("LIVE_ENTRY_TIMEOUT_SEC", 0, _DAY, "s"),
    ("EXITS_RETRY_EVERY_SEC", 1, _DAY, "s"),
    ("FAILSAFE_EXITS_MAX_TRIES", 1, 1000, "tries"),
    ("FAILSAFE_EXITS_GRACE_SEC", 0, _DAY, "s"),
    ("LIVE_STATUS_POLL_EVERY", 1, 3600, "s"),
    ("MANAGE_EVERY_SEC", 1, 3600, "s"),
    ("SL_WATCHDOG_GRACE_SEC", 0, 3600, "s"),
    ("SL_WATCHDOG_RETRY_SEC", 1, 3600, "s"),
    ("TRAIL_UPDATE_EVERY_SEC", 1, _DAY, "s"),
    ("SL_LIMIT_GAP_TICKS", 0, 100_000, "ticks"),
    ("TRAIL_SWING_LOOKBACK", 1, 100_000, "bars"),
    ("TRAIL_SWING_LR", 1, 100, "bars"),
    ("TP1_BE_MAX_ATTEMPTS", 1, 1000, "attempts"),
    ("TP1_BE_COOLDOWN_SEC", 0, _DAY, "s"),
    ("INVAR_EVERY_SEC", 1, _DAY, "s"),
    ("INVAR_THROTTLE_SEC", 0, 7 * _DAY, "s"),
    ("INVAR_GRACE_SEC", 0, _DAY, "s"),
    ("INVAR_FEED_STALE_SEC", 1, 7 * _DAY, "s"),
    ("I13_GRACE_SEC", 0, 7 * _DAY, "s"),
    ("I13_ESCALATE_SEC", 0, 7 * _DAY, "s"),
    ("I13_EXCHANGE_MIN_INTERVAL_SEC", 0, _DAY, "s"),
    ("ORPHAN_CANCEL_EVERY_SEC", 1, _DAY, "s"),
    ("RECON_THROTTLE_SEC", 0, 7 * _DAY, "s"),
    ("SNAPSHOT_MIN_SEC", 0, 3600, "s"),
    ("COMMAND_TTL_SEC", 1, _DAY, "s a command stays valid"),
)


def _validate_bounds(cfg: Config) -> None:
    """Every numeric setting in BOUNDS within its range; the message names the variable and the range."""
    for name, lo, hi, what in BOUNDS:
        v = getattr(cfg, name)
        top = getattr(cfg, hi) if isinstance(hi, str) else hi
        if not lo <= v <= top:
            hi_text = f"{hi}={top}" if isinstance(hi, str) else f"{top}"
            raise ConfigError(f"{name}={v} is out of range; allowed: {lo} <= {name} <= {hi_text} ({what})")


# ---- issue 21: live is explicit ----------------------------------------------------------------------------
_PAPER_KEY_PREFIXES = ("paper",)   # the paper exchange's keys (paper-key, paper-secret, ...)


def is_paper_url(url: str) -> bool:
    """True when the exchange URL is the local paper exchange: a loopback host (127.0.0.0/8, ::1, localhost).
    Any other host is a real exchange (Binance, its testnet or demo)."""
    host = (urlsplit(url).hostname or "").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _validate_live_clock(cfg: Config) -> None:
    if is_paper_url(cfg.BINANCE_BASE_URL):
        return
    where = f"with BINANCE_BASE_URL={cfg.BINANCE_BASE_URL} (not the local paper exchange)"
    if cfg.CLOCK == "replay":
        raise ConfigError(f"CLOCK=replay is refused {where}: a real exchange runs on the wall clock; allowed: wall")
    if cfg.REPLAY_LOCKSTEP:
        raise ConfigError(f"REPLAY_LOCKSTEP=true is refused {where}; allowed: false")


def require_live_keys(cfg: Config) -> None:
    """With a real exchange, BINANCE_API_KEY / BINANCE_API_SECRET must be set and not the paper exchange's."""
    if is_paper_url(cfg.BINANCE_BASE_URL):
        return
    # with an RSA / Ed25519 key file the secret is not used (signing.py): only the API key must be real
    names = ("BINANCE_API_KEY",) if cfg.BINANCE_PRIVATE_KEY_FILE else ("BINANCE_API_KEY", "BINANCE_API_SECRET")
    for name in names:
        v = getattr(cfg, name).strip()
        if not v or v.lower().startswith(_PAPER_KEY_PREFIXES):
            raise ConfigError(f"{name} is {'empty' if not v else 'a paper exchange key'} with BINANCE_BASE_URL="
                              f"{cfg.BINANCE_BASE_URL} (not the local paper exchange); allowed: your Binance "
                              f"API {'key' if name.endswith('KEY') else 'secret'}")


# ---- issue 22c: BINANCE_ENV ------------------------------------------------------------------------------------
# (REST base URL, WebSocket API URL) per environment, as Binance documents them: rest-api.md / web-socket-api.md
# "General API Information" (live, and the Spot Testnet's wss://ws-api.testnet.binance.vision/ws-api/v3),
# demo-mode/general-info.md (Demo Mode, CHANGELOG 2026-01-29). The Spot Testnet has no /sapi (margin) endpoints.
BINANCE_ENV_URLS: dict[str, tuple[str, str]] = {
    "live": ("https://api.binance.com", "wss://ws-api.binance.com:443/ws-api/v3"),
    "testnet": ("https://testnet.binance.vision", "wss://ws-api.testnet.binance.vision/ws-api/v3"),
    "demo": ("https://demo-api.binance.com", "wss://demo-ws-api.binance.com/ws-api/v3"),
}


def _binance_env_urls(raw: Mapping[str, str], values: dict[str, object]) -> None:
    """BINANCE_ENV fills BINANCE_BASE_URL / BINANCE_WS_URL that are not set explicitly (explicit URLs win).
    An unknown BINANCE_ENV stops here, naming the variable and the allowed values."""
    env = str(values.get("BINANCE_ENV", "live"))
    if env not in BINANCE_ENV_URLS:
        raise ConfigError(f"BINANCE_ENV={raw.get('BINANCE_ENV')!r} is not allowed; allowed: "
                          f"{', '.join(BINANCE_ENV_URLS)}")
    rest, ws = BINANCE_ENV_URLS[env]
    if not raw.get("BINANCE_BASE_URL", "").strip():
        values["BINANCE_BASE_URL"] = rest
    if not raw.get("BINANCE_WS_URL", "").strip():
        values["BINANCE_WS_URL"] = ws
    if env == "testnet" and values.get("TRADE_MODE", "spot") == "margin" and not raw.get("BINANCE_BASE_URL"):
        raise ConfigError("TRADE_MODE=margin with BINANCE_ENV=testnet: the Spot Testnet has no margin (/sapi) "
                          "endpoints; allowed: TRADE_MODE=spot on testnet, or BINANCE_ENV=demo or live for margin")


def _validate_order_count(cfg: Config) -> None:
    """The order-count limits and the exits' reserve: positive, the reserve below each limit."""
    _positive(cfg, "ORDER_COUNT_LIMIT_10S", "ORDER_COUNT_LIMIT_1D")
    _non_negative(cfg, "ORDER_COUNT_EXIT_RESERVE")
    if cfg.ORDER_COUNT_EXIT_RESERVE >= min(cfg.ORDER_COUNT_LIMIT_10S, cfg.ORDER_COUNT_LIMIT_1D):
        raise ConfigError(f"ORDER_COUNT_EXIT_RESERVE={cfg.ORDER_COUNT_EXIT_RESERVE} must be below "
                          f"ORDER_COUNT_LIMIT_10S={cfg.ORDER_COUNT_LIMIT_10S} and ORDER_COUNT_LIMIT_1D "
                          f"(orders kept for exits out of each window)")
# ---- issue 22: loss limits and the original settings an event-driven design replaced -------------------------
LOSS_LIMITS = ("MAX_DAILY_LOSS_USD", "MAX_CONSECUTIVE_LOSSES", "MAX_TRADES_PER_DAY")

# The original's cadences (its 5 s polling loop and the ticks inside it); each is accepted, validated as the
# original read it, and replaced by what the services do instead (one start-up line, shared.runtime.boot).
REPLACED_CADENCES: dict[str, str] = {
    "POLL_SEC": "signals are read from the stream as they arrive (blocking read), not every POLL_SEC",
    "MANAGE_EVERY_SEC": "exit_manager acts on each order update and price point, not on a manage tick",
    "LIVE_STATUS_POLL_EVERY": "order status comes from the user data stream; REST polling is the fallback "
                              "(REST_POLL_MS within REST_WEIGHT_BUDGET_PER_MIN)",
    "SNAPSHOT_MIN_SEC": "open orders are known from the `orders` stream; no openOrders snapshot cache",
    "RECON_THROTTLE_SEC": "reconciliation runs at start-up and on a stream gap; alerts are throttled per "
                          "kind/trade/cause by the shared alert gate",
    "ORPHAN_CANCEL_EVERY_SEC": "a replaced stop is cancelled once and confirmed by its CANCELED update (an "
                               "already-gone stop is never re-cancelled)",
}


REPLACED_CADENCES["INVAR_PERSIST"] = ("invariant throttle times and runtime data always live in Redis (persisted "
                                      "with it); the original never read this setting and always saved them")


def replaced_settings_note(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """The original settings set in `env` that the event-driven design replaced, each with what replaced it
    (logged as one start-up line by shared.runtime.boot); empty when none is set."""
    env = os.environ if env is None else env
    return {name: why for name, why in REPLACED_CADENCES.items() if name in env}


def _validate_original_settings(cfg: Config) -> None:
    """Loss limits (0 = off, never negative), EXEC_LOG / LOG_MAX_LINES and the exit-side settings of the original
    (TRAIL_SOURCE, SL_WATCHDOG_GRACE_SEC, SL_WATCHDOG_RETRY_SEC: parsed here, wired by the exit manager)."""
    _non_negative(cfg, *LOSS_LIMITS)
    _non_negative(cfg, "LOG_MAX_LINES")
    # The original sleeps POLL_SEC each loop: a negative value made time.sleep raise and ended the process.
    _non_negative(cfg, "POLL_SEC", "MANAGE_EVERY_SEC", "LIVE_STATUS_POLL_EVERY", "SNAPSHOT_MIN_SEC",
                  "RECON_THROTTLE_SEC", "ORPHAN_CANCEL_EVERY_SEC")
    # SL_WATCHDOG_GRACE_SEC: seconds a stop may stay passed-through without filling before the market close
    # (the original fires at once for 0 or less); SL_WATCHDOG_RETRY_SEC: at most one market attempt per window
    # (0 or less: every manage tick). Both accepted as the original did; negative values act as 0.
