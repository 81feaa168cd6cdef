"""The engine learns its entry's fate from the `orders` stream (published by the real user_stream process from the
paper exchange's user data stream), with REST queries only as the fallback and within REST_WEIGHT_BUDGET_PER_MIN.

The REST `GET order` queries the engine makes are counted by the engine itself (heartbeat info and the
`entry_filled` event's `rest_queries`); the paper exchange is not instrumented."""
from __future__ import annotations

import signal
import time
from decimal import Decimal

import msgspec

from shared.adapters.binance_rest import BinanceClient
from shared.adapters.heartbeat import Heartbeat
from tests.test_position_engine_support import executed, far_below, make_stack_fixture  # noqa: F401  (fixture)


def _hb(s, process: str) -> Heartbeat | None:
    raw = s.r.get(f"{s.prefix}hb:{process}")
    return msgspec.json.decode(raw, type=Heartbeat) if raw else None


def _engine_info(s) -> dict:
    hb = _hb(s, "position_engine")
    return hb.info if hb is not None else {}


def _up_with_stream(s):
    s.up("user_stream")
    s.wait(lambda: (_hb(s, "user_stream") or Heartbeat(process="", pid=0, ts=0)).info.get("connected"), 30,
           "user_stream connected")
    s.wait(lambda: _engine_info(s).get("stream_ok"), 10, "engine sees the stream")
    return s


def _handed_over(s):
    st = s.wait_status("OPEN_FILLED", 30)
    p = st.position
    assert s.position_kinds(p.trade_key).count("ENTRY_FILLED") == 1
    filled = [o for o in s.entry_orders() if Decimal(o["executedQty"]) > 0]
    assert p.filled_qty == executed(filled) > 0
    return p, s.wait_event("entry_filled")


def _fee_on_exchange(s, order_id: int) -> Decimal:
    """The base-asset commission the exchange records for the entry (the test reads myTrades itself)."""
    c = BinanceClient(s.env["BINANCE_BASE_URL"], s.env["BINANCE_API_KEY"], s.env["BINANCE_API_SECRET"])
    try:
        return sum((t.commission for t in c.my_trades(s.env.get("SYMBOL", "BTCUSDC"), order_id=order_id)
                    if t.commission_asset == "BTC"), Decimal(0))
    finally:
        c.close()


def _pending_in_group(s) -> int:
    groups = {g["name"].decode(): g for g in s.r.xinfo_groups(f"{s.prefix}orders")}
    return groups["position_engine"]["pending"]


def test_resting_limit_fill_is_learned_from_the_stream(make_stack):
    s = _up_with_stream(make_stack(ENTRY_MODE="LIMIT_ONLY"))
    s.signal("long", s.last() - 50)
    p0 = s.wait_status("OPEN").position
    s.price(p0.entry_price - 1)  # trades through the limit: it fills, the user data stream reports it
    p, ev = _handed_over(s)
    assert ev.trade_key == p.trade_key
    assert ev.data["rest_queries"] <= 1, ev.data
    s.wait(lambda: _engine_info(s).get("stream_updates", 0) >= 1, 5, "stream updates counted (heartbeat)")
    assert p.filled_qty == p.qty and p.entry_fee_base == _fee_on_exchange(s, p.entry_order_id) > 0
    s.wait(lambda: _pending_in_group(s) == 0, 10, "orders acked by position_engine")


def test_unknown_send_outcome_is_adopted_from_the_stream(make_stack):
    s = _up_with_stream(make_stack(ENTRY_MODE="LIMIT_ONLY"))
    s.fault(after_accept_5xx=1, path="/api/v3/order", side="BUY")  # accepted, but the reply is a 5xx
    s.signal("long", s.last() - 50)
    s.wait_event("entry_unknown_outcome")
    p0 = s.wait_status("OPEN").position  # NEW from the stream -> OPEN
    assert p0.entry_order_id > 0
    s.price(p0.entry_price - 1)
    _p, ev = _handed_over(s)
    assert ev.data["rest_queries"] <= 1, ev.data
    assert s.event_for("entry_resend") is None and len(s.entry_orders()) == 1


def test_rest_fallback_without_user_stream(make_stack):
    s = make_stack(ENTRY_MODE="LIMIT_ONLY").up()  # no user_stream: no heartbeat, the engine polls
    assert not _engine_info(s).get("stream_ok")
    s.signal("long", s.last() - 50)
    p0 = s.wait_status("OPEN").position
    s.price(p0.entry_price - 1)
    p, ev = _handed_over(s)
    assert ev.data["rest_queries"] >= 1
    assert p.entry_fee_base == _fee_on_exchange(s, p.entry_order_id) > 0


def test_rest_fallback_when_the_stream_is_silent(make_stack):
    # user_stream is connected but the exchange swallows its events (and its own REST cross-check is far away):
    # the send's outcome is unknown, nothing comes on the stream, so the engine queries the client id.
    s = _up_with_stream(make_stack(ENTRY_MODE="MARKET_ONLY", USER_STREAM_CHECK_SEC="600"))
    s.fault(ws_silent=-1)
    s.fault(after_accept_5xx=1, path="/api/v3/order", side="BUY")
    s.signal("long", s.last())
    s.wait_event("entry_unknown_outcome")
    _p, ev = _handed_over(s)
    assert ev.data["rest_queries"] >= 1
    assert len(s.entry_orders()) == 1


def test_user_stream_killed_mid_entry_rest_takes_over(make_stack):
    s = _up_with_stream(make_stack(ENTRY_MODE="LIMIT_ONLY"))
    s.signal("long", s.last() - 50)
    p0 = s.wait_status("OPEN").position
    s.kill("user_stream", signal.SIGKILL)
    s.wait(lambda: not _engine_info(s).get("stream_ok"), 15, "engine notices the stream is gone")
    s.price(p0.entry_price - 1)
    _p, ev = _handed_over(s)
    assert ev.data["rest_queries"] >= 1


def test_fill_while_the_engine_is_down_comes_from_its_consumer_group(make_stack):
    s = _up_with_stream(make_stack(ENTRY_MODE="LIMIT_ONLY"))
    s.signal("long", s.last() - 50)
    p0 = s.wait_status("OPEN").position
    s.kill("position_engine")
    s.price(p0.entry_price - 1)
    s.wait(lambda: s.entry_orders()[0]["status"] == "FILLED", 10, "entry filled on the exchange")
    s.wait(lambda: s.r.xlen(f"{s.prefix}orders") >= 2, 10, "fill published on the orders stream")
    s.start("position_engine")
    s.wait_ready(after=1)
    p, ev = _handed_over(s)
    assert ev.data["rest_queries"] <= 1 and p.filled_qty == p0.qty
    s.wait(lambda: _pending_in_group(s) == 0, 10, "orders acked by position_engine")


def test_weight_budget_holds_under_a_long_resting_limit(make_stack, market_bars):
    # A tiny budget: 40 weight/min = burst 4 (one query) + 36/min refill, i.e. one 4-weight query every ~6.7 s,
    # whatever REST_POLL_MS (50 ms) asks for, with no user_stream to learn from.
    budget, weight = 40, 4
    s = make_stack(ENTRY_MODE="LIMIT_ONLY", REST_WEIGHT_BUDGET_PER_MIN=str(budget))
    t0 = time.monotonic()
    s.up()
    s.signal("long", far_below(market_bars))
    s.wait_status("OPEN")
    s.admin("/speed", {"speed": 30})  # half a minute of market time per wall second: the limit keeps resting
    time.sleep(12)  # observing the engine's polling over wall time (the budget is wall time, like Binance's)
    info = _engine_info(s)
    elapsed = time.monotonic() - t0
    queries = info["rest_order_queries"]
    assert 1 <= queries, info
    # the bucket's bound: burst + refill over the elapsed time; and never more than the budget in a minute
    assert queries * weight <= weight + (budget - weight) / 60 * elapsed + weight, (queries, elapsed, info)
    assert queries * weight <= budget
    assert info["rest_budget_denied"] > 0 and info["rest_budget_per_min"] == budget
    assert s.status() == "OPEN" and s.event_for("entry_filled") is None


# ---- the pure parts: the weight budget and when REST is due ---------------------------------------------------


def test_weight_budget_never_spends_more_than_its_minute():
    from shared.domain.weight_budget import WeightBudget, default_burst
    b = WeightBudget(40, default_burst(40, 4))
    spent_at = [t / 10 for t in range(3000) if b.take(4, 1000.0 + t / 10)]  # asked every 100 ms for 300 s
    for i, t in enumerate(spent_at):  # any 60 s window holds at most 40 weight = 10 queries
        assert sum(1 for u in spent_at[i:] if u < t + 60) * 4 <= 40
    assert len(spent_at) >= 40 * 300 / 60 / 4 - 10 and b.denied > 0
    b.charge(20, 1400.0)  # a call that had to be made (myTrades) delays the next optional one
    assert not b.take(4, 1400.0) and b.wait_sec(4, 1400.0) > 20


def test_weight_budget_backs_off_on_the_ips_reported_weight():
    from shared.domain.weight_budget import WeightBudget
    b = WeightBudget(1200, 120)
    b.note_ip_usage(5000, 120.5)  # 5000 of 6000 used in the minute starting at 120 s
    assert not b.take(4, 121.0) and 0 < b.wait_sec(4, 121.0) <= 59.5
    assert b.take(4, 180.1)  # a new wall-clock minute: the exchange's counter restarted
    b.note_ip_usage(None, 181.0)
    assert b.take(4, 181.0)


def test_rest_poll_reason():
    from shared.domain.entry_rules import rest_poll_reason
    assert rest_poll_reason(stream_ok=False, now=10, expect_since=None, heard_at=9.9, last_rest=9.9) == "stream_down"
    # sent at 100, nothing heard: silent after 1.5 s
    assert rest_poll_reason(stream_ok=True, now=101, expect_since=100, heard_at=0, last_rest=0) is None
    assert rest_poll_reason(stream_ok=True, now=101.6, expect_since=100, heard_at=0, last_rest=0) == "stream_silent"
    # heard after the send: quiet is normal until the confirmation interval
    assert rest_poll_reason(stream_ok=True, now=110, expect_since=100, heard_at=100.2, last_rest=0) is None
    assert rest_poll_reason(stream_ok=True, now=116, expect_since=100, heard_at=100.2, last_rest=0) == "confirm"
