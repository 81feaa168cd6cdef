"""A symbol's trading filters (PRICE_FILTER, LOT_SIZE, NOTIONAL/MIN_NOTIONAL), as read from exchangeInfo."""
from __future__ import annotations

from decimal import Decimal

import msgspec


class SymbolFilters(msgspec.Struct, frozen=True):
    """Everything sizing and rounding need to know about a symbol. All Decimal."""
    symbol: str
    base_asset: str
    quote_asset: str
    tick_size: Decimal
    step_size: Decimal
    min_qty: Decimal
    max_qty: Decimal
    min_notional: Decimal
    min_price: Decimal = Decimal(0)
    max_price: Decimal = Decimal(0)
