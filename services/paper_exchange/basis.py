"""The USDT/USDC basis: SYMBOL's prices derived from the feed symbol's (the market file's). Pure functions."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

_BPS = Decimal(10000)


def to_symbol(feed_price: Decimal, basis_bps: Decimal, tick: Decimal) -> Decimal:
    """SYMBOL's price for a feed price: feed x (1 + basis/10000), rounded half-up to the tick (exact at 0)."""
    if basis_bps == 0:
        return feed_price
    return (feed_price * (1 + basis_bps / _BPS)).quantize(tick, rounding=ROUND_HALF_UP)


def to_feed(price: Decimal, basis_bps: Decimal, tick: Decimal) -> Decimal:
    """The feed price that SYMBOL's `price` stands for (the inverse of `to_symbol`, rounded to the tick)."""
    if basis_bps == 0:
        return price
    return (price / (1 + basis_bps / _BPS)).quantize(tick, rounding=ROUND_HALF_UP)


def point(feed_price: Decimal, basis_bps: Decimal, tick: Decimal) -> tuple[Decimal, Decimal | None]:
    """(SYMBOL's price, the feed symbol's price or None when there is no basis) for one replayed point."""
    if basis_bps == 0:
        return feed_price, None
    return to_symbol(feed_price, basis_bps, tick), feed_price
