"""Fault injection through the real client: each fault maps to the right typed error."""
from __future__ import annotations

import time
from decimal import Decimal

import pytest

from shared.adapters.binance_rest import NotFound, RateLimited, Rejected, UnknownOutcome

from tests.pe_helpers import SYMBOL, pe  # noqa: F401  (pytest fixture: a real paper exchange)

Q = Decimal("0.001")


def _buy(c, cid):
    bid, _ = c.book_ticker(SYMBOL)
    return c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id=cid)


def test_5xx_after_accept_is_unknown_outcome_and_the_order_exists(pe):
    c = pe.client()
    pe.post("/admin/faults", {"after_accept_5xx": 1, "path": "/api/v3/order", "side": "BUY"})
    with pytest.raises(UnknownOutcome) as ei:
        _buy(c, "u1")
    assert ei.value.http_status == 503 and not ei.value.outcome_known
    assert c.get_order(SYMBOL, client_order_id="u1").status == "NEW"  # the caller's required next step


def test_fault_restricted_by_side_leaves_other_side_alone(pe):
    c = pe.client()
    pe.post("/admin/faults", {"after_accept_5xx": 1, "path": "/api/v3/order", "side": "SELL"})
    assert _buy(c, "side-ok").status == "NEW"
    assert len(pe.get("/admin/faults")["faults"]) == 1


def test_reply_held_past_client_timeout_is_unknown_outcome(pe):
    c = pe.client(timeout=0.3)
    pe.post("/admin/faults", {"after_accept_delay_ms": 1500, "path": "/api/v3/order"})
    with pytest.raises(UnknownOutcome):
        _buy(c, "late1")
    assert pe.order("late1")["status"] == "NEW"
    pe.post("/admin/faults", {"timeout": 1, "timeout_ms": 1500, "path": "/api/v3/order"})
    with pytest.raises(UnknownOutcome):
        _buy(c, "late2")
    assert pe.order("late2")["status"] == "NEW"


def test_429_is_rate_limited_with_retry_after(pe):
    c = pe.client()
    pe.post("/admin/faults", {"http_429": 1, "retry_after": 3, "path": "/api/v3/order"})
    with pytest.raises(RateLimited) as ei:
        _buy(c, "rl1")
    assert ei.value.retry_after == 3 and ei.value.outcome_known
    assert pe.get("/admin/orders") == []


def test_418_ban_is_rate_limited(pe):
    c = pe.client()
    pe.post("/admin/faults", {"http_418": 1, "retry_after": 2})
    with pytest.raises(RateLimited) as ei:
        c.open_orders(SYMBOL)
    assert (ei.value.http_status, ei.value.retry_after, ei.value.code) == (418, 2, -1003)


def test_transient_2013_right_after_placing(pe):
    c = pe.client()
    o = _buy(c, "t1")
    pe.post("/admin/faults", {"transient_2013": 1})
    with pytest.raises(NotFound) as ei:
        c.get_order(SYMBOL, client_order_id="t1")
    assert ei.value.code == -2013
    assert c.get_order(SYMBOL, client_order_id="t1").order_id == o.order_id


def test_reject_orders(pe):
    c = pe.client()
    pe.post("/admin/faults", {"reject_orders": 1, "side": "BUY"})
    with pytest.raises(Rejected) as ei:
        _buy(c, "rej1")
    assert ei.value.code == -2010
    assert _buy(c, "rej2").status == "NEW"


def test_latency(pe):
    c = pe.client()
    pe.post("/admin/faults", {"latency_ms": 200, "path": "/api/v3/openOrders"})
    t0 = time.monotonic()
    c.open_orders(SYMBOL)
    assert time.monotonic() - t0 >= 0.2
    pe.post("/admin/faults", {"latency_ms": 0, "path": "/api/v3/openOrders"})
    assert pe.get("/admin/faults")["faults"] == []
