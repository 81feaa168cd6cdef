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


KNOWN_QUOTES: tuple[str, ...] = ("FDUSD", "USDC", "USDT", "BUSD", "TUSD", "DAI", "EUR", "TRY", "BRL", "GBP",
                                 "BTC", "ETH", "BNB")


def split_symbol(symbol: str) -> tuple[str, ...]:
    """(base, quote) of a Binance symbol by its known quote suffix (KNOWN_QUOTES, the one list every process
    uses); () when it cannot be split."""
    s = symbol.strip().upper()
    q = next((q for q in KNOWN_QUOTES if s.endswith(q) and len(s) > len(q)), "")
    return (s[: -len(q)], q) if q else ()


def quote_of(symbol: str) -> str:
    """The quote asset of a Binance symbol by its known suffix ('' when none matches)."""
    parts = split_symbol(symbol)
    return parts[1] if parts else ""


def basis_k(symbol_book: tuple[Decimal, Decimal], feed_book: tuple[Decimal, Decimal]) -> Decimal:
    """§5 of the original's rules: k = mid(SYMBOL) / mid(feed symbol), mid = (bid + ask) / 2; ValueError unless
    both books are positive."""
    s_mid, f_mid = sum(symbol_book) / 2, sum(feed_book) / 2
    if min(*symbol_book, *feed_book) <= 0:
        raise ValueError(f"book without a price: {symbol_book} / {feed_book}")
    return (s_mid / f_mid).quantize(Decimal("1e-12"))
