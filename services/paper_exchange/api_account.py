"""The endpoints and answers of `flags.py` (issue 22 preflight): GET /sapi/v1/account/apiRestrictions and
GET /sapi/v1/bnbBurn as Binance documents them, and account / exchangeInfo / time answered per the flags."""
from __future__ import annotations

import time
from typing import Any

from services.paper_exchange import api, api_margin, api_market
from services.paper_exchange.app import PaperApp
from services.paper_exchange.flags import DEFAULT_RESTRICTIONS


def api_restrictions(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /sapi/v1/account/apiRestrictions (USER_DATA, weight 1 IP)."""
    return {**DEFAULT_RESTRICTIONS, **app.s.account_flags.api_restrictions}


def bnb_burn(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /sapi/v1/bnbBurn (USER_DATA, weight 1 IP)."""
    return {"spotBNBBurn": app.s.account_flags.bnb_burn, "interestBNBBurn": False}


def _can_trade(handler: Any, field: str) -> Any:
    """`handler`'s answer with `field` (canTrade, tradeEnabled) as PAPER_CAN_TRADE says."""
    def answer(app: PaperApp, p: dict[str, str]) -> Any:
        doc = handler(app, p)
        doc[field] = app.s.account_flags.can_trade
        return doc
    return answer


def exchange_info(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/exchangeInfo with SYMBOL's status, order types, OCO and margin as configured."""
    doc = api_market.exchange_info(app, p)
    f = app.s.account_flags
    for sym in doc["symbols"]:
        if sym["symbol"] != app.s.symbol:
            continue
        sym["status"] = f.symbol_status
        if f.order_types:
            sym["orderTypes"] = list(f.order_types)
        sym["ocoAllowed"] = f.oco_allowed
        if not f.margin_allowed:
            sym["isMarginTradingAllowed"] = False
            sym["permissionSets"] = [["SPOT"]]
    return doc


def isolated_account(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /sapi/v1/margin/isolated/account with tradeEnabled as PAPER_CAN_TRADE says."""
    doc = api_margin.isolated_account(app, p)
    for pair in doc.get("assets", []):
        pair["tradeEnabled"] = app.s.account_flags.can_trade
    return doc


def server_time(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/time, offset by PAPER_TIME_OFFSET_MS."""
    return {"serverTime": int(time.time() * 1000) + app.s.account_flags.time_offset_ms}


PUBLIC = {("GET", "/api/v3/exchangeInfo"): exchange_info, ("GET", "/api/v3/time"): server_time}
SIGNED = {("GET", "/sapi/v1/account/apiRestrictions"): api_restrictions, ("GET", "/sapi/v1/bnbBurn"): bnb_burn,
          ("GET", "/api/v3/account"): _can_trade(api.account, "canTrade"),
          ("GET", "/sapi/v1/margin/account"): _can_trade(api_margin.cross_account, "tradeEnabled"),
          ("GET", "/sapi/v1/margin/isolated/account"): isolated_account}
WEIGHTS = {("GET", "/sapi/v1/account/apiRestrictions"): ("X-SAPI-USED-IP-WEIGHT-1M", 1),
           ("GET", "/sapi/v1/bnbBurn"): ("X-SAPI-USED-IP-WEIGHT-1M", 1)}
