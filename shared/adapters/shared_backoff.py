"""A 429/418 back-off shared by every process through Redis, so one process's ban stops them all."""
from __future__ import annotations

import math
import time

import redis

MAX_BLOCK_SEC = 3 * 86400.0   # Binance's longest IP ban (418)


class RedisBackoff:
    """`blocked_until()` / `block(until)` over one Redis key holding an epoch time (wall clock)."""

    def __init__(self, r: redis.Redis, key: str) -> None:
        self._r, self._key = r, key

    def blocked_until(self) -> float:
        """The shared deadline; a value that is not a finite time (a hand-written key) counts as none, and no
        deadline is ever further than Binance's longest ban (3 days) from now."""
        raw = self._r.get(self._key)
        try:
            until = float(raw) if raw else 0.0
        except ValueError:
            return 0.0
        return min(until, time.time() + MAX_BLOCK_SEC) if math.isfinite(until) else 0.0

    def block(self, until: float) -> None:
        ttl_ms = max(1, int((until - time.time()) * 1000))
        # Keep the later deadline when two processes are told to wait; count every 429/418 (`<key>:hits`, read
        # by the metrics process).
        self._r.eval("redis.call('INCR',KEYS[2]) local c=tonumber(redis.call('GET',KEYS[1]) or '0') "
                     "if tonumber(ARGV[1])>c then redis.call('SET',KEYS[1],ARGV[1],'PX',ARGV[2]) end return 1",
                     2, self._key, f"{self._key}:hits", repr(until), ttl_ms)
