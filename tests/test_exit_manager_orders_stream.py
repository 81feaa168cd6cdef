"""The exit manager learns its legs' fills from the `orders` stream (published by the real user_stream process from
the paper exchange's user data stream) as they happen; REST polling is only the budgeted fallback.

The REST weight the exit manager spends is counted by the exit manager itself (its heartbeat info:
`rest_poll_weight` for the polling, `rest_action_weight` for the GETs its actions need); the paper exchange is not
instrumented."""
from __future__ import annotations

import time
from decimal import Decimal

import msgspec
import pytest

from shared.adapters.heartbeat import Heartbeat
from tests.stack import Stack
from tests.test_exit_manager_support import (  # noqa: F401 - make is a fixture
    make,
    MARGIN,
    alerts,
    assert_closed,
    assert_no_duplicates,
    assert_stops_only_tighten,
    events,
    leg,
    open_long,
    price,
    wait_closed,
    wait_event,
)

TICK = Decimal("0.01")
OLD_POLL_WEIGHT_PER_SEC = 6 / 0.050   # before: GET openOrders (weight 6) every REST_POLL_MS (50 ms in the stack)


def _hb(s: Stack, process: str) -> Heartbeat | None:
    raw = s.r.get(f"{s.prefix}hb:{process}")
    return msgspec.json.decode(raw, type=Heartbeat) if raw else None


def _em_info(s: Stack) -> dict:
    hb = _hb(s, "exit_manager")
    return hb.info if hb is not None else {}


def _fresh_hb(s: Stack) -> Heartbeat:
    """The exit manager's next heartbeat (it beats every second): its counters as of now."""
    since = time.time()
    return s.wait(lambda: (hb := _hb(s, "exit_manager")) is not None and hb.ts > since and hb, 5, "fresh heartbeat")


def _with_stream(s: Stack) -> Stack:
    s.start("user_stream")
    s.wait(lambda: (hb := _hb(s, "user_stream")) is not None and hb.info.get("connected"), 30, "user_stream connected")
    s.wait(lambda: _em_info(s).get("stream_ok"), 10, "exit manager sees the stream")
    return s


def _pending(s: Stack) -> int:
    groups = {g["name"].decode(): g for g in s.r.xinfo_groups(f"{s.prefix}orders")}
    return groups["exit_manager"]["pending"]


def _moves_done(s: Stack) -> bool:
    p = s.state().position
    return p is not None and all(lg.status in ("PLACED", "DONE") for lg in p.legs)


def _settled(s: Stack, trade_key: str, name: str) -> list:
    return [e for e in events(s, "leg_settled", trade_key) if e.data.get("leg") == name]


def test_tp1_fill_is_learned_from_the_stream_and_break_even_follows(make):
    # The safety sweep is pushed out of the test's window: only the stream can tell of the fill in time.
    s = _with_stream(make(EXIT_REST_SWEEP_SEC="60"))
    pos = open_long(s)
    # the five resting orders' NEW updates came in: nothing owed, no REST read for a silent stream
    s.wait(lambda: _em_info(s).get("stream_updates", 0) >= 5, 10, "legs' NEW updates on the stream")
    before = _fresh_hb(s)
    t0 = time.monotonic()
    price(s, pos.tp1 + TICK)
    wait_event(s, "break_even_done", timeout=10)
    took = time.monotonic() - t0
    s.wait(lambda: _moves_done(s), 10, "break-even moves done")
    after = _fresh_hb(s)

    tp1 = _settled(s, pos.trade_key, "tp1")
    assert [e.data["source"] for e in tp1] == ["stream"] and tp1[0].data["reason"] == "tp", tp1
    assert took < 3.0, f"break-even {took:.2f} s after the fill"
    be = leg(s, "trail").stop_price
    assert be >= pos.avg_entry and leg(s, "tp2").stop_price == be

    window = after.ts - before.ts
    polled = after.info["rest_poll_weight"] - before.info["rest_poll_weight"]
    assert polled <= 0.05 * OLD_POLL_WEIGHT_PER_SEC * window, (polled, window, after.info)
    assert after.info["stream_updates"] > before.info["stream_updates"]

    price(s, be)  # the rest is stopped at break-even: learned from the stream too
    wait_closed(s)
    assert_closed(s, pos.trade_key, "stop")
    assert {lg.name: lg.exit_reason for lg in s.state().last_closed.legs} == {"tp1": "tp", "tp2": "stop",
                                                                              "trail": "stop"}
    assert {e.data["source"] for e in events(s, "leg_settled", pos.trade_key) if e.data.get("status") == "DONE"} \
        == {"stream"}
    assert_stops_only_tighten(s, pos.trade_key)
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)
    s.wait(lambda: _pending(s) == 0, 10, "orders acked by exit_manager")
    final = _fresh_hb(s).info
    assert final["rest_polls"].get("stream_down", 0) == 0, final


def test_rest_fallback_completes_the_trade_when_user_stream_is_down(make):
    s = _with_stream(make())
    pos = open_long(s)
    s.kill("user_stream")
    s.r.delete(f"{s.prefix}hb:user_stream")
    s.wait(lambda: not _em_info(s).get("stream_ok", True), 10, "exit manager sees the stream down")
    before = _fresh_hb(s)
    price(s, pos.tp1 + TICK)
    wait_event(s, "break_even_done", timeout=10)
    s.wait(lambda: _moves_done(s), 10, "break-even moves done")
    be = leg(s, "trail").stop_price
    assert be >= pos.avg_entry
    price(s, be)
    wait_closed(s)
    assert_closed(s, pos.trade_key, "stop")
    assert [e.data["source"] for e in _settled(s, pos.trade_key, "tp1")] == ["rest"]
    after = _fresh_hb(s)
    assert after.info["rest_polls"].get("stream_down", 0) > before.info["rest_polls"].get("stream_down", 0)
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)


# ---- the pure rules the learning step decides with ---------------------------------------------------------------

def test_rest_learn_reason():
    from shared.domain.exit_rules import rest_learn_reason as why
    kw = {"sweep_sec": 5.0, "silent_sec": 1.5}
    assert why(stream_ok=True, now=100.0, last_rest=0.0, expect_since=None, **kw) == "start"
    assert why(stream_ok=False, now=100.0, last_rest=99.9, expect_since=None, **kw) == "stream_down"
    assert why(stream_ok=True, now=100.0, last_rest=99.0, expect_since=98.0, **kw) == "stream_silent"
    assert why(stream_ok=True, now=100.0, last_rest=99.0, expect_since=99.0, **kw) is None
    assert why(stream_ok=True, now=100.0, last_rest=95.0, expect_since=None, **kw) == "sweep"
    assert why(stream_ok=True, now=100.0, last_rest=96.0, expect_since=None, **kw) is None


def test_records_never_go_back_and_a_leg_needs_all_its_orders_reported():
    from shared.domain.exit_rules import newer_record, stream_view
    from shared.domain.orders import Order
    from shared.domain.position import Leg

    def o(cid: str, status: str, executed: str = "0", working: bool = False) -> Order:
        return Order(symbol="BTCUSDC", order_id=1, client_order_id=cid, status=status,
                     executed_qty=Decimal(executed), is_working=working)
    new, part, filled = o("a", "NEW"), o("a", "PARTIALLY_FILLED", "0.1"), o("a", "FILLED", "0.2")
    assert newer_record(None, new) and newer_record(new, part) and newer_record(part, filled)
    assert not newer_record(filled, part) and not newer_record(part, new)
    assert newer_record(new, o("a", "NEW", working=True)) and not newer_record(o("a", "NEW", working=True), new)
    assert newer_record(new, o("a", "CANCELED"))
    lg = Leg(name="tp1", qty=Decimal("0.3"), stop_price=Decimal(1), stop_limit=Decimal(1), tp_client_id="p",
             stop_client_id="s")
    assert stream_view(lg, {"p": filled}) is None
    assert set(stream_view(lg, {"p": filled, "s": new, "x": new})) == {"p", "s"}


def test_a_short_bought_back_by_hand_is_seen_on_the_margin_stream_at_once(make):
    """Cross margin: user_stream follows the margin wallet (listenToken). A person's buy-back reaches the exit
    manager as a trade of an order that is not the trade's, which makes the wallet check due at once: the sweep
    (EXIT_REST_SWEEP_SEC=120) would only have found it two minutes later."""
    s = _with_stream(make(**MARGIN, EXIT_REST_SWEEP_SEC="120"))
    pos = open_long(s, side="short")
    wait_event(s, "wallet_baseline")
    from shared.adapters.binance_rest import BinanceClient
    person = BinanceClient(s.env["BINANCE_BASE_URL"], s.env["BINANCE_API_KEY"], s.env["BINANCE_API_SECRET"],
                           margin="cross")
    t0 = time.monotonic()
    person.place_order("BTCUSDC", "BUY", "MARKET", pos.exit_qty, client_order_id="by-hand-s",
                       side_effect_type="NO_SIDE_EFFECT")
    wait_closed(s, timeout=15)
    assert time.monotonic() - t0 < 15 < 120
    assert s.state().last_closed.exit_reason == "manual"
    assert s.open_orders() == []
    assert any(a["event"] == "manual_close" for a in alerts(s, pos.trade_key))




@pytest.mark.parametrize("run", [1, 2])  # the stream's two records of a stop come a moment apart: two chances
def test_an_ordinary_stop_out_far_through_the_limits_is_not_a_gap(make, run):
    """The stream shows each stop triggered (open, working) an instant before its fill, with the market already far
    past its limit. That is no gap: no stop_gapped, no flatten, the close reason is the stop."""
    s = _with_stream(make(EXIT_REST_SWEEP_SEC="60"))
    pos = open_long(s)
    s.wait(lambda: _em_info(s).get("stream_updates", 0) >= 5, 10, "legs' NEW updates on the stream")
    price(s, pos.sl - TICK * 30000)  # one point, NOT a gap: every price between traded
    wait_closed(s)
    assert not events(s, "stop_gapped", pos.trade_key), "a stop that filled at its own price reported as a gap"
    assert not events(s, "flatten_requested", pos.trade_key)
    assert_closed(s, pos.trade_key, "stop")
    assert all(lg.exit_reason == "stop" for lg in s.state().last_closed.legs)
    stops = [o for o in s.orders() if o["clientOrderId"].startswith(pos.trade_key) and
             o["type"] == "STOP_LOSS_LIMIT" and o["status"] == "FILLED"]
    assert len(stops) == 3 and all(Decimal(o["fills"][0]["price"]) == Decimal(o["stopPrice"]) for o in stops)
