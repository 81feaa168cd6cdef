"""The 429/418 back-off is shared by every process through Redis: one client told to wait stops the others."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest
import redis

from shared.adapters.binance_rest import RateLimited
from shared.adapters.shared_backoff import RedisBackoff
from tests.pe_helpers import SYMBOL, pe  # noqa: F401 - the paper exchange fixture


def test_a_429_seen_by_one_process_blocks_another_through_redis(pe, redis_url):  # noqa: F811
    r1, r2 = redis.Redis.from_url(redis_url), redis.Redis.from_url(redis_url)  # two processes' connections
    key = f"bk{time.time_ns()}:backoff"
    c, other = pe.client(backoff=RedisBackoff(r1, key)), pe.client(backoff=RedisBackoff(r2, key))
    pe.post("/admin/faults", {"http_429": 1, "retry_after": 3})
    with pytest.raises(RateLimited):
        c.open_orders(SYMBOL)
    assert float(r2.get(key)) > time.time() + 2 and 0 < r2.pttl(key) <= 3100
    with pytest.raises(RateLimited) as ei:  # refused locally: never sent
        other.place_order(SYMBOL, "BUY", "MARKET", Decimal("0.001"), client_order_id="blocked")
    assert ei.value.http_status is None and pe.get("/admin/orders") == []
    # A shorter ban seen later never shortens the longer one already shared.
    RedisBackoff(r2, key).block(time.time() + 1)
    assert float(r1.get(key)) > time.time() + 1.5
    assert int(r1.get(f"{key}:hits")) == 2  # every 429/418 counted (executor_exchange_rate_limited_total)
    r1.close()
    r2.close()
