"""Binance's unfilled-order-count limits: the paper exchange's X-MBX-ORDER-COUNT-10S / -1D headers and -1015 (HTTP
429), the client's typed TooManyOrders (not a ban, no shared back-off), and the one budget in Redis for every
process: an entry waits when the IP's count leaves only the exits' reserve; stops never ask it."""
from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path
from typing import Iterator

import pytest
import redis
import requests

from shared.adapters.binance_rest import BinanceClient, TooManyOrders
from shared.adapters.order_budget import RedisOrderBudget
from shared.adapters.signing import HmacSigner
from shared.domain.order_count import DAY, WINDOW_10S, OrderCounts, entry_wait, window_start
from tests.pe_helpers import KEY, SECRET, SYMBOL, Paper, paper_env
from tests.test_position_engine_support import far_below, make_stack_fixture  # noqa: F401  (fixture make_stack)

Q = Decimal("0.001")


def test_entry_wait_rule():
    now = 1_000_000_003.0
    w10, d = window_start(now, WINDOW_10S), window_start(now, DAY)
    free = OrderCounts(count_10s=5, window_10s=w10, count_1d=5, day=d)
    assert entry_wait(free, now, 100, 1000, 10) == 0
    near = OrderCounts(count_10s=90, window_10s=w10, count_1d=5, day=d)  # 91 > 100 - 10: the rest is the exits'
    assert entry_wait(near, now, 100, 1000, 10) == pytest.approx(w10 + 10 - now)
    stale = OrderCounts(count_10s=100, window_10s=w10 - 10, count_1d=5, day=d)  # a past window no longer counts
    assert entry_wait(stale, now, 100, 1000, 10) == 0
    day_full = OrderCounts(count_1d=995, day=d)
    assert entry_wait(day_full, now, 100, 1000, 10) == pytest.approx(d + DAY - now)
    held = OrderCounts(hold_until=now + 4)
    assert entry_wait(held, now, 100, 1000, 10) == pytest.approx(4)


@pytest.fixture
def limited(tmp_path: Path) -> Iterator[Paper]:
    # the day's limit (the 10 s one works alike): a test cannot straddle a UTC midnight by accident
    p = Paper(paper_env(tmp_path, PAPER_ORDER_LIMIT_1D="3"))
    yield p
    p.stop()


def test_paper_exchange_counts_orders_and_refuses_over_the_limit(limited, redis_url):
    p = limited
    r = redis.Redis.from_url(redis_url)
    key = f"t{time.time_ns()}:order_count"
    a = BinanceClient(p.url, KEY, SECRET, order_budget=RedisOrderBudget(r, key, 100, 3, 1))
    b_budget = RedisOrderBudget(r, key, 100, 3, 1)   # another process, same IP: same Redis hash
    info = requests.get(p.url + "/api/v3/exchangeInfo", params={"symbol": SYMBOL}, timeout=5).json()
    assert {"rateLimitType": "ORDERS", "interval": "DAY", "intervalNum": 1, "limit": 3} in info["rateLimits"]
    bid, _ = a.book_ticker(SYMBOL)
    a.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="oc-1")
    assert b_budget.entry_wait() == 0          # 1 placed, limit 3, reserve 1: an entry may go
    a.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 101, time_in_force="GTC", client_order_id="oc-2")
    assert b_budget.counts().count_1d == 2
    assert b_budget.entry_wait() > 0           # the last one of the window is the exits'
    a.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 102, time_in_force="GTC", client_order_id="oc-3")
    with pytest.raises(TooManyOrders) as ei:   # a stop would be sent anyway; the exchange refuses the 4th
        a.place_order(SYMBOL, "SELL", "STOP_LOSS_LIMIT", Q, price=bid - 300, stop_price=bid - 299,
                      time_in_force="GTC", client_order_id="oc-4")
    e = ei.value
    assert (e.code, e.http_status) == (-1015, 429) and 0 < e.retry_after <= DAY
    assert "Too many new orders; current limit is 3 orders per 1 DAY." in e.msg and e.outcome_known
    assert a.backoff.blocked_until() == 0      # not an IP ban: nothing else is blocked
    assert {o.client_order_id for o in a.open_orders(SYMBOL)} == {"oc-1", "oc-2", "oc-3"}
    assert b_budget.entry_wait() >= e.retry_after - 1   # every process's entries wait for the Retry-After
    a.cancel_order(SYMBOL, client_order_id="oc-1")      # cancels go on


def test_order_count_headers_on_every_successful_order(tmp_path):
    p = Paper(paper_env(tmp_path))
    try:
        c = p.client()
        bid, _ = c.book_ticker(SYMBOL)
        def signed_query(q: str) -> str:
            q += f"&timestamp={int(time.time() * 1000)}"
            return q + "&signature=" + HmacSigner(SECRET).sign(q)

        q = f"symbol={SYMBOL}&side=BUY&type=LIMIT&timeInForce=GTC&quantity=0.001&price={bid - 100}"
        r = requests.post(f"{p.url}/api/v3/order?{signed_query(q)}", headers={"X-MBX-APIKEY": KEY}, timeout=5)
        assert r.status_code == 200
        assert int(r.headers["X-MBX-ORDER-COUNT-10S"]) >= 1 and int(r.headers["X-MBX-ORDER-COUNT-1D"]) >= 1
        # CHANGELOG 2026-03-27: a successful order request costs no request weight
        w0 = int(r.headers["X-MBX-USED-WEIGHT-1M"])
        r2 = requests.post(f"{p.url}/api/v3/order?{signed_query(q)}", headers={"X-MBX-APIKEY": KEY}, timeout=5)
        assert int(r2.headers["X-MBX-USED-WEIGHT-1M"]) == w0
    finally:
        p.stop()


def test_an_entry_waits_for_the_order_budget_and_goes_when_it_frees(make_stack, market_bars):
    s = make_stack(ORDER_COUNT_LIMIT_1D="50", ORDER_COUNT_EXIT_RESERVE="10").up()
    budget = RedisOrderBudget(s.r, s.prefix + "order_count", 100, 50, 10)
    budget.note({"X-MBX-ORDER-COUNT-10S": "0", "X-MBX-ORDER-COUNT-1D": "40"})  # other processes used the day
    assert budget.entry_wait() > 0
    s.signal("long", far_below(market_bars))
    held = s.wait_event("entry_held_order_count")
    assert held.data["wait_s"] > 0
    assert s.entry_orders() == []               # nothing sent while the budget holds it
    s.r.delete(s.prefix + "order_count")        # the day rolled over (or a count that fell)
    ev = s.wait_event("entry_sent", timeout=30)
    assert ev.trade_key == held.trade_key and len(s.entry_orders()) == 1


def test_in_a_lock_step_replay_the_order_windows_run_on_market_time(tmp_path):
    """A replay compresses hours into seconds: the exchange counts orders per 10 s of market time there (as live
    Binance does per 10 s of wall time), so a fast replay never holds an entry live would not have held."""
    p = Paper(paper_env(tmp_path, PAPER_ORDER_LIMIT_10S="2", REPLAY_LOCKSTEP="true"))
    try:
        c = p.client()
        bid, _ = c.book_ticker(SYMBOL)
        for i in range(2):
            c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100 - i, time_in_force="GTC",
                          client_order_id=f"ls-{i}")
        with pytest.raises(TooManyOrders):  # the same market 10 s
            c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 110, time_in_force="GTC", client_order_id="ls-2")
        p.post("/admin/advance", {"points": 1})  # 15 s of market time later, a moment of wall time
        c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 110, time_in_force="GTC", client_order_id="ls-2")
        assert p.order("ls-2")["status"] == "NEW"
    finally:
        p.stop()
