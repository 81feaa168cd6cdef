"""The settings a replay (and each combination of a sweep) runs with: the product's own settings (SL_PCT,
TP_R_LIST, ...) and the market the paper exchange models (PAPER_FEE_RATE, PAPER_SLIPPAGE_BPS, ...), from
`--set NAME=VALUE` and the named market options. The private stack's wiring (ports, Redis, files, clock) is the
replay's own and cannot be set; everything is validated before anything starts (the same parsers the
processes use), so a bad value is a message naming the setting, never a stack that dies half-way.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.executorctl.ctx import CtlError
from services.paper_exchange import settings as paper_settings
from shared.config import ConfigError, load_config

# The market-shaping settings of the paper exchange a replay may choose (README "Replay: what the figures mean").
MARKET = ("PAPER_FEE_RATE", "PAPER_SLIPPAGE_BPS", "PAPER_SPREAD_TICKS", "PAPER_PARTIAL_FILL_RATIO", "PAPER_BASIS_BPS",
          "PAPER_FEED_SYMBOL", "PAPER_BALANCES", "PAPER_MARGIN_LEVERAGE", "PAPER_MARGIN_INTEREST_HOURLY",
          "PAPER_PAGE_MAX")
# What wires the private stack together: set by the replay itself, never by the user.
WIRING = frozenset({"REDIS_URL", "EXEC_PREFIX", "CLOCK", "REPLAY_LOCKSTEP", "BINANCE_BASE_URL", "BINANCE_WS_URL",
                    "BINANCE_API_KEY", "BINANCE_API_SECRET", "AGG_CSV", "DELTASCOUT_LOG", "STATE_FN",
                    "WATCHDOG_PROCESSES", "PYTHONPATH"})


def parse_set(items: list[str] | None) -> dict[str, str]:
    """`--set NAME=VALUE` (repeatable) as a dict; a malformed item or a wiring setting is a CtlError."""
    out: dict[str, str] = {}
    for item in items or []:
        name, sep, value = item.partition("=")
        name = name.strip().upper()
        if not sep or not name or not name.replace("_", "").isalnum():
            raise CtlError(f"--set {item!r}: expected NAME=VALUE (for example SL_PCT=0.003)")
        check_name(name)
        out[name] = value.strip()
    return out


def check_name(name: str) -> None:
    """A setting a replay may take: not the stack's wiring, and of the paper exchange only the market's."""
    if name in WIRING or (name.startswith("PAPER_") and name not in MARKET):
        allowed = ", ".join(MARKET)
        raise CtlError(f"{name}: set by the replay's private stack itself; a replay takes the product's settings "
                       f"and, of the paper exchange's, only the market it models: {allowed}")


def market_of(env: dict[str, str]) -> dict[str, Any]:
    """The market the paper exchange will model with `env` (its own parser: a bad value is a CtlError naming it)."""
    try:
        s = paper_settings.from_env(env)
    except paper_settings.SettingsError as e:
        raise CtlError(f"configuration error: {e}") from None
    return {"PAPER_FEE_RATE": s.fee_rate, "PAPER_SLIPPAGE_BPS": s.slippage_bps, "PAPER_SPREAD_TICKS": s.spread_ticks,
            "PAPER_PARTIAL_FILL_RATIO": s.partial_fill_ratio, "PAPER_BASIS_BPS": s.basis_bps,
            "PAPER_FEED_SYMBOL": s.feed_symbol,
            "PAPER_BALANCES": ",".join(f"{a}={format(v, 'f')}" for a, v in sorted(s.balances.items())),
            "PAPER_MARGIN_LEVERAGE": s.margin_leverage, "PAPER_MARGIN_INTEREST_HOURLY": s.margin_interest_hourly}


def validate(settings: dict[str, str]) -> None:
    """Refuse, before anything runs, settings the processes or the paper exchange would refuse at start-up."""
    for name in settings:
        check_name(name)
    try:
        load_config(dict(settings))
    except ConfigError as e:
        raise CtlError(f"configuration error: {e}") from None
    market_of(dict(settings))


def market_text(m: dict[str, Any]) -> str:
    """One line for people."""
    def f(v: Any) -> str:
        return format(v.normalize(), "f") if isinstance(v, Decimal) else str(v)
    return (f"fee rate {f(m['PAPER_FEE_RATE'])}, slippage {f(m['PAPER_SLIPPAGE_BPS'])} bps, spread "
            f"{f(m['PAPER_SPREAD_TICKS'])} tick(s), partial fill ratio {f(m['PAPER_PARTIAL_FILL_RATIO'])}, basis "
            f"{f(m['PAPER_BASIS_BPS'])} bps over {m['PAPER_FEED_SYMBOL']}, balances {m['PAPER_BALANCES']}")
