"""Binance's unfilled-order-count limits (ORDERS rate limits, X-MBX-ORDER-COUNT-10S / -1D): pure rules.

The counts are per account and shared by every process that places orders. An entry may be sent only while both
windows keep `reserve` orders free for the exits it and the open position will need; a stop or any other exit is
never held back here (if the exchange itself refuses it with -1015, the exit side retries it as any refusal)."""
from __future__ import annotations

import msgspec

WINDOW_10S = 10
DAY = 86_400


class OrderCounts(msgspec.Struct, frozen=True):
    """The last counts the exchange reported, each with the window it belongs to (start, epoch seconds)."""
    count_10s: int = 0
    window_10s: int = 0
    count_1d: int = 0
    day: int = 0
    hold_until: float = 0.0   # a -1015's Retry-After: no entry before this (epoch seconds)


def window_start(now: float, length: int) -> int:
    """Start (epoch s) of the fixed window of `length` seconds holding `now` (days are UTC days)."""
    return int(now // length) * length


def entry_wait(c: OrderCounts, now: float, limit_10s: int, limit_1d: int, reserve: int) -> float:
    """Seconds before an entry may be sent (0: now). Counts of a past window no longer count."""
    waits = [c.hold_until - now]
    if c.window_10s == window_start(now, WINDOW_10S) and c.count_10s + 1 > limit_10s - reserve:
        waits.append(c.window_10s + WINDOW_10S - now)
    if c.day == window_start(now, DAY) and c.count_1d + 1 > limit_1d - reserve:
        waits.append(c.day + DAY - now)
    return max(0.0, *waits)
