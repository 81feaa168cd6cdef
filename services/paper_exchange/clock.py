"""Publishes the paper exchange's MARKET time to Redis so the product's replay clock can follow it."""
from __future__ import annotations

import logging

import redis

log = logging.getLogger("paper_exchange.clock")


class ClockPublisher:
    """SETs `{prefix}clock` to market epoch ms after every price point; a no-op without a URL."""

    def __init__(self, redis_url: str, prefix: str, lockstep: bool = False):
        self.key = f"{prefix}clock"
        self.prefix = prefix
        self.lockstep = lockstep
        self._redis = None
        if redis_url:
            self._redis = redis.Redis.from_url(redis_url, socket_timeout=1.0, socket_connect_timeout=1.0)

    def publish(self, market_ms: int) -> None:
        """Best effort: a Redis outage must not stop the exchange, but every failure is logged."""
        if self._redis is None:
            return
        try:
            self._redis.set(self.key, market_ms)
        except (OSError, redis.RedisError) as e:
            log.warning("cannot publish market clock to Redis key %s: %s", self.key, e)

    def count_ws_events(self, n: int) -> None:
        """Lock-step replay: `n` user-data events were queued to subscribers (shared/adapters/lockstep.py). Called
        before the request or the price point that caused them is answered, so the driver waits for them."""
        if not self.lockstep or self._redis is None or n <= 0:
            return
        try:
            self._redis.incrby(f"{self.prefix}lockstep:ws_sent", n)
        except (OSError, redis.RedisError) as e:
            log.warning("cannot count user-data events in Redis (%s): %s", self.prefix, e)
