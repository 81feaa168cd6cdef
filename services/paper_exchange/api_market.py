"""Binance's public market data endpoints on the paper exchange, for every listed symbol.

SYMBOL (traded) and the feed's own symbol PAPER_FEED_SYMBOL (the market file's prices, unscaled; listed but not
tradable by this account) are served; SYMBOL's prices are the feed's times (1 + PAPER_BASIS_BPS / 10000).
"""
from __future__ import annotations

import time
from typing import Any

import msgspec

from services.paper_exchange import basis, stats, views
from services.paper_exchange.app import PaperApp
from services.paper_exchange.model import ApiError
from services.paper_exchange.settings import STP_MODES, split_symbol


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
        "defaultSelfTradePreventionMode": s.stp_mode,
        "allowedSelfTradePreventionModes": list(STP_MODES),
    }


def exchange_info(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/exchangeInfo (`symbol` or `symbols` narrow it; neither = every listed symbol)."""
    names, _ = selection(app, p)
    s = app.s
    limits = [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000},
              {"rateLimitType": "ORDERS", "interval": "SECOND", "intervalNum": 10, "limit": s.order_limit_10s},
              {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": s.order_limit_1d},
              {"rateLimitType": "RAW_REQUESTS", "interval": "MINUTE", "intervalNum": 5, "limit": 300000}]
    return {"timezone": "UTC", "serverTime": int(time.time() * 1000), "rateLimits": limits, "exchangeFilters": [],
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


def ticker_24hr(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/ticker/24hr (type FULL, the default, or MINI) over the replayed bars of the last 24 h."""
    names, many = selection(app, p)
    kind = p.get("type", "FULL") or "FULL"
    if kind not in ("FULL", "MINI"):
        raise ApiError(-1100, "Illegal characters found in parameter 'type'; legal range is 'FULL, MINI'.")
    r, e, now = app.replay, app.engine, app.engine.st.market_ms
    lo, hi = stats.day_window(r.bars, r.completed(), now)
    rows = [stats.ticker_24h(n, r.bars, lo, hi, e.last_of(n), e.book_at(e.last_of(n)), now, _scale(app, n),
                             full=kind == "FULL") for n in names]
    return _answer(rows, many)


def _scale(app: PaperApp, sym: str):
    """Feed price -> `sym`'s price: SYMBOL's carries the basis, the feed symbol's is the file's."""
    s = app.s
    if sym != s.symbol:
        return lambda px: px
    return lambda px: basis.to_symbol(px, s.basis_bps, s.tick_size)


DEPTH_MAX = 5000


def order_book(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/depth: a book built from the replayed price and PAPER_SPREAD_TICKS (limit default 100; more
    than 5000 gives 5000)."""
    sym = p.get("symbol", "")
    if not sym:
        raise ApiError(-1102, "Mandatory parameter 'symbol' was not sent, was empty/null, or malformed.")
    if sym not in app.s.symbols:
        raise ApiError(-1121, "Invalid symbol.")
    n = _depth_limit(p)
    e = app.engine
    return stats.depth(e.book_at(e.last_of(sym)), app.s.tick_size, min(n, DEPTH_MAX), app.journal.seq)


def _depth_limit(p: dict[str, str]) -> int:
    raw = p.get("limit", "")
    if raw == "":
        return 100
    if not raw.isdigit() or int(raw) < 1:
        raise ApiError(-1100, "Illegal characters found in parameter 'limit'; legal range is '^[0-9]{1,20}$'.")
    return int(raw)


WEIGHTED = frozenset({"/api/v3/ticker/bookTicker", "/api/v3/ticker/price", "/api/v3/ticker/24hr", "/api/v3/depth"})


def _symbols_asked(p: dict[str, str]) -> int | None:
    """How many symbols a `symbols` list names (None when absent or unreadable)."""
    try:
        return len(msgspec.json.decode(p["symbols"].encode(), type=list[str])) if p.get("symbols") else None
    except msgspec.DecodeError:
        return None


def weight(path: str, p: dict[str, str]) -> int:
    """Binance's weights of the market data endpoints (by how many symbols / levels are asked for)."""
    if path == "/api/v3/depth":
        n = min(_int_or(p.get("limit"), 100), DEPTH_MAX)
        return 5 if n <= 100 else 25 if n <= 500 else 50 if n <= 1000 else 250
    if path == "/api/v3/ticker/24hr":
        if p.get("symbol"):
            return 2
        n = _symbols_asked(p)
        return 80 if n is None or n > 100 else 40 if n > 20 else 2
    return 2 if p.get("symbol") else 4


def _int_or(raw: str | None, default: int) -> int:
    return int(raw) if raw and raw.isdigit() else default


PUBLIC = {
    ("GET", "/api/v3/exchangeInfo"): exchange_info,
    ("GET", "/api/v3/ticker/bookTicker"): book_ticker,
    ("GET", "/api/v3/ticker/price"): ticker_price,
    ("GET", "/api/v3/ticker/24hr"): ticker_24hr,
    ("GET", "/api/v3/depth"): order_book,
}
