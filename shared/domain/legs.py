"""Split a filled quantity into the three exit legs, in whole step units."""
from __future__ import annotations

from decimal import Decimal

from shared.domain.risk_math import steps_of

LegPrices = tuple[Decimal, Decimal, Decimal]


def leg_floor_prices(tp1: Decimal, tp2: Decimal, stop_limit: Decimal) -> LegPrices:
    """The lowest price each leg's orders rest at (a NOTIONAL filter checks price x qty): tp1 and tp2 at the lower of
    their take-profit and the stop's limit; the runner at the stop's limit, or at TP2 for a short (it trails below)."""
    return min(tp1, stop_limit), min(tp2, stop_limit), min(stop_limit, tp2)


def split_qty_3legs(qty: Decimal, step: Decimal, min_qty: Decimal, min_notional: Decimal,
                    price: Decimal | LegPrices) -> tuple[Decimal, Decimal, Decimal]:
    """(tp1, tp2, trail) quantities summing exactly to the step-floored qty: thirds (the remainder goes to the
    trailing leg), degrading to 50/50/0 when a leg would be below min qty or min notional at its price (one price
    for all legs, or one per leg), then to 100/0/0. The part of qty below one step (dust) is not in any leg."""
    units = steps_of(qty, step)
    prices = price if isinstance(price, tuple) else (price, price, price)

    def ok(u: int, p: Decimal) -> bool:
        q = step * u
        return u > 0 and q >= min_qty and q * p >= min_notional

    third = units // 3
    if ok(third, prices[0]) and ok(third, prices[1]) and ok(units - 2 * third, prices[2]):
        return step * third, step * third, step * (units - 2 * third)
    half = units // 2
    if ok(half, prices[0]) and ok(units - half, prices[1]):
        return step * half, step * (units - half), Decimal(0) * step
    return step * units, Decimal(0) * step, Decimal(0) * step
