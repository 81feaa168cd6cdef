"""Binance's public market data endpoints on the paper exchange, for every listed symbol.

SYMBOL (traded) and the feed's own symbol PAPER_FEED_SYMBOL (the market file's prices, unscaled; listed but not
tradable by this account) are served; SYMBOL's prices are the feed's times (1 + PAPER_BASIS_BPS / 10000).
"""
from __future__ import annotations

import time
from typing import Any

import msgspec

from services.paper_exchange import views
from services.paper_exchange.app import PaperApp
from services.paper_exchange.model import ApiError
from services.paper_exchange.settings import split_symbol


def selection(app: PaperApp, p: dict[str, str]) -> tuple[list[str], bool]:
    """(symbols asked for, answer as an array): `symbol` = one object; `symbols` (a JSON array) or neither = an
    array (every listed symbol). Unknown symbol -1121, both sent -1128, a malformed list -1100."""
    one, many = p.get("symbol", ""), p.get("symbols", "")
    listed = app.s.symbols
    if one and many:
        raise ApiError(-1128, "Combination of optional parameters invalid.")
    if one:
        if one not in listed:
            raise ApiError(-1121, "Invalid symbol.")
        return [one], False
    if not many:
        return list(listed), True
    try:
        names = msgspec.json.decode(many.encode(), type=list[str])
    except msgspec.DecodeError:
        raise ApiError(-1100, "Illegal characters found in parameter 'symbols'; legal range is "
                              "'^\\[(\"[A-Z0-9-_.]{1,20}\"(,\"[A-Z0-9-_.]{1,20}\"){0,}){0,1}\\]$'.") from None
    if len(set(names)) != len(names):
        raise ApiError(-1151, "Symbol is present multiple times in the list.")
    if not names or any(n not in listed for n in names):
        raise ApiError(-1121, "Invalid symbol.")
    return names, True


def _answer(rows: list[dict[str, Any]], as_array: bool) -> Any:
    return rows if as_array else rows[0]


def symbol_info(app: PaperApp, sym: str) -> dict[str, Any]:
    """One exchangeInfo symbol: SYMBOL tradable (spot and margin), the feed symbol listed with trading off."""
    s, d8 = app.s, views.d8
    traded = sym == s.symbol
    base, quote = split_symbol(sym)
    return {
        "symbol": sym, "status": "TRADING", "baseAsset": base, "baseAssetPrecision": 8,
        "quoteAsset": quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
        "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
        "orderTypes": ["LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
                       "TAKE_PROFIT_LIMIT"],
        "icebergAllowed": False, "ocoAllowed": True, "otoAllowed": False, "quoteOrderQtyMarketAllowed": True,
        "allowTrailingStop": False, "cancelReplaceAllowed": True, "isSpotTradingAllowed": traded,
        # Margin (cross and isolated) is served for SYMBOL: Binance lists MARGIN in its permission sets.
        "isMarginTradingAllowed": traded, "permissions": [],
        "permissionSets": [["SPOT", "MARGIN"]] if traded else [],
        "filters": [
            {"filterType": "PRICE_FILTER", "minPrice": d8(s.min_price), "maxPrice": d8(s.max_price),
             "tickSize": d8(s.tick_size)},
            {"filterType": "LOT_SIZE", "minQty": d8(s.min_qty), "maxQty": d8(s.max_qty),
             "stepSize": d8(s.qty_step)},
            {"filterType": "NOTIONAL", "minNotional": d8(s.min_notional), "applyMinToMarket": True,
             "maxNotional": "9000000.00000000", "applyMaxToMarket": False, "avgPriceMins": 5},
        ],
        "defaultSelfTradePreventionMode": "EXPIRE_MAKER",
        "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
    }


def exchange_info(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/exchangeInfo (`symbol` or `symbols` narrow it; neither = every listed symbol)."""
    names, _ = selection(app, p)
    return {"timezone": "UTC", "serverTime": int(time.time() * 1000), "rateLimits": [], "exchangeFilters": [],
            "symbols": [symbol_info(app, n) for n in names]}


def book_ticker(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/ticker/bookTicker: one object for `symbol`, else an array."""
    names, many = selection(app, p)
    rows = []
    for n in names:
        bid, ask = app.engine.book_at(app.engine.last_of(n))
        rows.append({"symbol": n, "bidPrice": views.d8(bid), "bidQty": "1.00000000", "askPrice": views.d8(ask),
                     "askQty": "1.00000000"})
    return _answer(rows, many)


def ticker_price(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/ticker/price: one object for `symbol`, else an array."""
    names, many = selection(app, p)
    return _answer([{"symbol": n, "price": views.d8(app.engine.last_of(n))} for n in names], many)


WEIGHTED = frozenset({"/api/v3/ticker/bookTicker", "/api/v3/ticker/price"})


def weight(path: str, p: dict[str, str]) -> int:
    """Binance's weights of the market data endpoints (by how many symbols / levels are asked for)."""
    if path in ("/api/v3/ticker/bookTicker", "/api/v3/ticker/price"):
        return 2 if p.get("symbol") else 4
    return 1


PUBLIC = {
    ("GET", "/api/v3/exchangeInfo"): exchange_info,
    ("GET", "/api/v3/ticker/bookTicker"): book_ticker,
    ("GET", "/api/v3/ticker/price"): ticker_price,
}
