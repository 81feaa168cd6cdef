"""Pure checks a signal passes at the moment the engine would act on it (issue 21): still fresh by the stack's
clock, and priced where SYMBOL's book is (re-priced by k), so a late, foreign or stuck-feed signal never becomes
an order. Ingest checks freshness when it reads a line; the engine checks again because it may read the signal
much later (it was down, or busy)."""
from __future__ import annotations

from decimal import Decimal


def stale_refusal(signal_ts: float, now: float, max_age_sec: int) -> str | None:
    """`stale_at_engine (age ...)` when the signal is older than max_age_sec at `now` (exactly max_age passes,
    as the original's check), else None."""
    age = now - signal_ts
    if age > max_age_sec:
        return f"stale_at_engine (age {age:.1f}s > MAX_PEAK_AGE_SEC={max_age_sec}s)"
    return None


def deviation(signal_price: Decimal, k: Decimal, book_mid: Decimal) -> Decimal:
    """|signal price x k - SYMBOL's mid| / mid: how far the signal is from the market it would trade."""
    return abs(signal_price * k - book_mid) / book_mid


def deviation_refusal(signal_price: Decimal, k: Decimal, book_mid: Decimal, max_dev: Decimal) -> str | None:
    """`off_book (...)` when the re-priced signal is further than max_dev (a fraction) from SYMBOL's mid."""
    if book_mid <= 0:
        return f"off_book (no book: mid {book_mid})"
    dev = deviation(signal_price, k, book_mid)
    if dev > max_dev:
        return (f"off_book (signal {signal_price} x k {k} is {dev * 100:.2f}% from {book_mid}; "
                f"MAX_SIGNAL_DEVIATION_PCT={max_dev})")
    return None
