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


class _Binance429:
    """A stand-in of Binance (outside) that answers every request 429 with the Retry-After it is given."""

    def __init__(self) -> None:
        import http.server
        import threading
        outer = self
        self.retry_after = "1"

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                body = b'{"code":-1003,"msg":"Too many requests"}'
                self.send_response(429)
                self.send_header("Retry-After", outer.retry_after)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.mark.parametrize("header,expect", [("nan", 60.0), ("inf", 3 * 86400.0), ("-5", 0.0),
                                           ("1e12", 3 * 86400.0), ("7", 7.0), ("soon", 60.0)])
def test_a_retry_after_of_nan_inf_negative_or_huge_is_clamped_to_a_finite_wait(redis_url, header, expect):
    from shared.adapters.binance_rest import BinanceClient
    fake = _Binance429()
    fake.retry_after = header
    r = redis.Redis.from_url(redis_url)
    key = f"ra{time.time_ns()}:backoff"
    c = BinanceClient(fake.url, "k", "s", backoff=RedisBackoff(r, key))
    try:
        with pytest.raises(RateLimited) as ei:
            c.book_ticker(SYMBOL)
        assert ei.value.retry_after == expect
        until = RedisBackoff(r, key).blocked_until()
        assert until == 0.0 or time.time() - 1 <= until <= time.time() + 3 * 86400 + 1
    finally:
        c.close()
        fake.httpd.shutdown()
        r.close()


def test_a_hand_written_backoff_that_is_not_a_finite_time_blocks_nobody_forever(redis_url):
    r = redis.Redis.from_url(redis_url)
    b = RedisBackoff(r, "hand:backoff")
    for raw in ("inf", "nan", "garbage"):
        r.set("hand:backoff", raw)
        assert b.blocked_until() == 0.0
    r.set("hand:backoff", repr(time.time() + 10 ** 9))
    assert b.blocked_until() <= time.time() + 3 * 86400 + 1
    r.close()
