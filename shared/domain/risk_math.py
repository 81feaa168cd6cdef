"""Decimal rounding and formatting to a symbol's tick and step. Never float."""
from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation


def to_decimal(value: object) -> Decimal:
    """Decimal from str/int/Decimal (floats go through str so 0.1 stays 0.1); raise ValueError if not finite."""
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
    except (InvalidOperation, ValueError) as e:
        raise ValueError(f"not a number: {value!r}") from e
    if not d.is_finite():
        raise ValueError(f"not finite: {value!r}")
    return d


def _units(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    if step <= 0:
        raise ValueError(f"step must be positive, got {step}")
    return (value / step).to_integral_value(rounding=rounding)


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Largest multiple of `step` that is <= value."""
    return (_units(value, step, ROUND_FLOOR) * step).quantize(step)


def ceil_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Smallest multiple of `step` that is >= value."""
    return (_units(value, step, ROUND_CEILING) * step).quantize(step)


def round_nearest_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Nearest multiple of `step` (half up)."""
    return (_units(value, step, ROUND_HALF_UP) * step).quantize(step)


def steps_of(value: Decimal, step: Decimal) -> int:
    """How many whole steps fit in `value` (floored)."""
    return int(_units(value, step, ROUND_FLOOR))


def fmt_step(value: Decimal, step: Decimal) -> str:
    """`value` (already a multiple of step) as a plain string with the step's decimals, no exponent."""
    q = value.quantize(step.normalize() if step.normalize().as_tuple().exponent < 0 else Decimal(1))
    return format(q, "f")


def is_multiple(value: Decimal, step: Decimal) -> bool:
    """True when `value` is an exact multiple of `step`."""
    return step > 0 and (value % step) == 0
