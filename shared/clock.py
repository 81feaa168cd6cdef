"""The one clock every service reads: wall time, or in replay the market time published by the paper exchange."""
from __future__ import annotations

import time
from typing import Protocol

import redis


class Clock(Protocol):
    def now(self) -> float:
        """Seconds since the epoch."""


class WallClock:
    """Real time."""

    def now(self) -> float:
        return time.time()


class ReplayClock:
    """Market time of the replay: the paper exchange SETs `{prefix}clock` (epoch ms) after every price point.

    Until the first value arrives it falls back to wall time so start-up code can run.
    """

    def __init__(self, r: redis.Redis, key: str) -> None:
        self._r = r
        self._key = key

    def now(self) -> float:
        raw = self._r.get(self._key)
        return int(raw) / 1000.0 if raw is not None else time.time()


def make_clock(kind: str, r: redis.Redis, prefix: str) -> Clock:
    """The clock for the CLOCK setting ('wall' or 'replay')."""
    return ReplayClock(r, f"{prefix}clock") if kind == "replay" else WallClock()
