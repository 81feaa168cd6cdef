"""Symbol filter checks (PRICE_FILTER, LOT_SIZE, NOTIONAL), Binance's -1013 rejections."""
from __future__ import annotations

from decimal import Decimal

from services.paper_exchange.model import NewOrder, filter_failure
from services.paper_exchange.settings import Settings


def check_price(s: Settings, price: Decimal) -> None:
    """PRICE_FILTER: within [minPrice, maxPrice] and a multiple of tickSize."""
    if price < s.min_price or price > s.max_price or price % s.tick_size != 0:
        raise filter_failure("PRICE_FILTER")


def check_qty(s: Settings, qty: Decimal) -> None:
    """LOT_SIZE: within [minQty, maxQty] and (qty - minQty) a multiple of stepSize."""
    if qty < s.min_qty or qty > s.max_qty or (qty - s.min_qty) % s.qty_step != 0:
        raise filter_failure("LOT_SIZE")


def check_notional(s: Settings, price: Decimal, qty: Decimal) -> None:
    """NOTIONAL: price * qty >= minNotional."""
    if price * qty < s.min_notional:
        raise filter_failure("NOTIONAL")


def check_market_notional(s: Settings, req: NewOrder, reference: Decimal) -> None:
    """NOTIONAL for MARKET orders (exchangeInfo says applyMinToMarket): quantity x reference price, or
    quoteOrderQty, must reach minNotional. Binance values a market order at the symbol's average price; the
    paper exchange uses the last price. LOT_SIZE is checked first, as Binance does."""
    if req.type != "MARKET":
        return
    if req.quantity is not None:
        check_qty(s, req.quantity)
        check_notional(s, reference, req.quantity)
    elif req.quote_qty is not None and req.quote_qty < s.min_notional:
        raise filter_failure("NOTIONAL")
