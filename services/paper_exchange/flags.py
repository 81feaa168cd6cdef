"""What a real account can refuse that a paper one never would (issue 22: `executorctl preflight`): the API key's
restrictions, BNB fee burn, canTrade, the symbol's status, its order types and margin, the server's clock.

Each is a `PAPER_*` setting so every preflight FAIL path is tested against this exchange:

    PAPER_API_RESTRICTIONS  JSON object merged over the key's restrictions, e.g. {"enableWithdrawals": true}
    PAPER_BNB_BURN          true: fees paid in BNB (GET /sapi/v1/bnbBurn spotBNBBurn; fills charge BNB, ledger.py)
    PAPER_CAN_TRADE         false: GET /api/v3/account canTrade false (and the margin accounts' tradeEnabled)
    PAPER_SYMBOL_STATUS     SYMBOL's exchangeInfo status (TRADING, HALT, BREAK, END_OF_DAY ...)
    PAPER_ORDER_TYPES       comma list replacing SYMBOL's orderTypes
    PAPER_OCO_ALLOWED       false: ocoAllowed false
    PAPER_MARGIN_ALLOWED    false: isMarginTradingAllowed false, no MARGIN permission
    PAPER_TIME_OFFSET_MS    added to GET /api/v3/time's serverTime (a drifting local clock, seen from here)
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec


class AccountFlags(msgspec.Struct, frozen=True, kw_only=True):
    """The paper account's answers to the checks a live account can fail; the defaults pass them all."""
    api_restrictions: dict[str, Any] = msgspec.field(default_factory=dict)
    bnb_burn: bool = False
    can_trade: bool = True
    symbol_status: str = "TRADING"
    order_types: tuple[str, ...] = ()
    oco_allowed: bool = True
    margin_allowed: bool = True
    time_offset_ms: int = 0


# A trading key as Binance's GET /sapi/v1/account/apiRestrictions describes it: reading and spot/margin trading
# on, withdrawals and transfers off, restricted to trusted IPs.
DEFAULT_RESTRICTIONS: dict[str, Any] = {
    "ipRestrict": True, "createTime": 1_700_000_000_000, "enableReading": True, "enableWithdrawals": False,
    "enableInternalTransfer": False, "enableMargin": True, "enableFutures": False, "permitsUniversalTransfer": False,
    "enableVanillaOptions": False, "enableFixApiTrade": False, "enableFixReadOnly": False,
    "enableSpotAndMarginTrading": True, "enablePortfolioMarginTrading": False,
    "tradingAuthorityExpirationTime": 0,
}


def flags_from_env(env: Mapping[str, str], parse_bool: Any, parse_int: Any, error: type[Exception]) -> AccountFlags:
    """The flags from PAPER_* settings (`parse_bool`/`parse_int` are settings.py's, raising `error`)."""
    raw = env.get("PAPER_API_RESTRICTIONS", "").strip()
    restrictions: dict[str, Any] = {}
    if raw:
        try:
            restrictions = json.loads(raw)
        except json.JSONDecodeError:
            restrictions = None  # type: ignore[assignment]
        if not isinstance(restrictions, dict) or any(k not in DEFAULT_RESTRICTIONS for k in restrictions):
            raise error(f"PAPER_API_RESTRICTIONS={raw!r}: must be a JSON object of apiRestrictions fields "
                        f"({', '.join(DEFAULT_RESTRICTIONS)})")
    status = env.get("PAPER_SYMBOL_STATUS", "TRADING").strip().upper() or "TRADING"
    types = tuple(t.strip().upper() for t in env.get("PAPER_ORDER_TYPES", "").split(",") if t.strip())
    return AccountFlags(api_restrictions=restrictions, bnb_burn=parse_bool(env, "PAPER_BNB_BURN", False),
                        can_trade=parse_bool(env, "PAPER_CAN_TRADE", True), symbol_status=status,
                        order_types=types, oco_allowed=parse_bool(env, "PAPER_OCO_ALLOWED", True),
                        margin_allowed=parse_bool(env, "PAPER_MARGIN_ALLOWED", True),
                        time_offset_ms=parse_int(env, "PAPER_TIME_OFFSET_MS", 0, -86_400_000, 86_400_000))
