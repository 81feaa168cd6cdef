"""Split a filled quantity into the three exit legs, in whole step units."""
from __future__ import annotations

from decimal import Decimal

from shared.domain.risk_math import steps_of


def split_qty_3legs(qty: Decimal, step: Decimal, min_qty: Decimal, min_notional: Decimal, price: Decimal) -> tuple[Decimal, Decimal, Decimal]:
    """(tp1, tp2, trail) quantities summing exactly to the step-floored qty: thirds (the remainder goes to the
    trailing leg), degrading to 50/50/0 when a third would be below min qty or min notional, then to 100/0/0.
    The part of qty below one step (dust) is not in any leg."""
    units = steps_of(qty, step)

    def ok(u: int) -> bool:
        q = step * u
        return u > 0 and q >= min_qty and q * price >= min_notional

    third = units // 3
    if ok(third) and ok(units - 2 * third):
        return step * third, step * third, step * (units - 2 * third)
    half = units // 2
    if ok(half) and ok(units - half):
        return step * half, step * (units - half), Decimal(0) * step
    return step * units, Decimal(0) * step, Decimal(0) * step
