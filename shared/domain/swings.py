"""Swing (fractal) detection on minute bars: a swing low is lower than its `lr` neighbours on each side."""
from __future__ import annotations

from decimal import Decimal
from typing import Sequence


def swing_low_indices(lows: Sequence[Decimal], lr: int) -> list[int]:
    """Indices i with lows[i] strictly below lows[i-lr..i-1] and lows[i+1..i+lr]."""
    return [i for i in range(lr, len(lows) - lr)
            if all(lows[i] < lows[j] for j in range(i - lr, i)) and all(lows[i] < lows[j] for j in range(i + 1, i + lr + 1))]


def swing_high_indices(highs: Sequence[Decimal], lr: int) -> list[int]:
    """Indices i with highs[i] strictly above its `lr` neighbours on each side."""
    return [i for i in range(lr, len(highs) - lr)
            if all(highs[i] > highs[j] for j in range(i - lr, i)) and all(highs[i] > highs[j] for j in range(i + 1, i + lr + 1))]


def last_swing_low(lows: Sequence[Decimal], lr: int) -> Decimal | None:
    """The most recent confirmed swing low, or None."""
    idx = swing_low_indices(lows, lr)
    return lows[idx[-1]] if idx else None


def last_swing_high(highs: Sequence[Decimal], lr: int) -> Decimal | None:
    """The most recent confirmed swing high, or None."""
    idx = swing_high_indices(highs, lr)
    return highs[idx[-1]] if idx else None


def signal_window(bars: Sequence, signal_ts: float, swing_mins: int) -> list:
    """§2 of the original's rules: the SWING_MINS + 1 rows ending at the signal's bar (the first row whose minute
    is the signal's minute; the newest row when none is), rows newer than it excluded. Rows, not minutes: a gap
    in the feed stretches the window. `bars` are oldest first, each with `ts` in epoch seconds."""
    if not bars:
        return []
    minute = int(signal_ts // 60)
    i = next((j for j, b in enumerate(bars) if int(b.ts // 60) == minute), len(bars) - 1)
    return list(bars[max(0, i - max(0, swing_mins)):i + 1])


def window_extreme(window: Sequence, side: str) -> Decimal | None:
    """The lowest LowPrice (long) / highest HiPrice (short) of the window, None when it is empty."""
    if not window:
        return None
    return min(b.low for b in window) if side == "long" else max(b.high for b in window)
