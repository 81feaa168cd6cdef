"""SIGKILL of the exit manager at each step of protecting a position: on restart it rebuilds from Redis and the
exchange (orders by client id), adopts what exists, places what is missing and never duplicates a leg."""
from __future__ import annotations

from decimal import Decimal


from tests.stack import Stack
from tests.test_exit_manager_support import (  # noqa: F401 - make is a fixture
    make,
    assert_closed,
    assert_no_duplicates,
    assert_stops_only_tighten,
    events,
    leg,
    legs_placed,
    open_long,
    price,
    restart_exit_manager,
    wait_closed,
    wait_event,
)

TICK = Decimal("0.01")


def _stop_out(s: Stack, pos) -> None:
    s.wait(lambda: legs_placed(s) or s.state().position is None, 10, "legs resting")
    price(s, max(lg.stop_price for lg in s.state().position.legs))
    wait_closed(s)
    assert_closed(s, pos.trade_key, "stop")


def test_killed_after_the_fill_before_any_leg(make):
    s = make(exit_manager=False)
    pos = open_long(s, legs_resting=False)  # filled while the exit manager is down
    restart_exit_manager(s)
    s.wait(lambda: legs_placed(s), 10, "legs placed after the restart")
    _stop_out(s, pos)
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)


def test_killed_after_one_leg_was_accepted(make):
    s = make()
    s.admin("/faults", {"after_accept_delay_ms": 3000, "path": "/api/v3/orderList/oco"})
    s.append_peak("long", Decimal(s.admin("/state")["last"]))
    tk = lambda: s.state().position.trade_key
    s.wait(lambda: s.state().position is not None and any(o["clientOrderId"].endswith("-o1-0") or
                                                           o["clientOrderId"].endswith("-p1-0") for o in s.orders()),
           20, "tp1 OCO accepted by the exchange")
    s.kill("exit_manager")  # before the reply: the state still says NEW
    pos = s.state().position
    assert leg(s, "tp1").status == "NEW"
    s.admin("/faults", {"clear": True})
    restart_exit_manager(s)
    s.wait(lambda: legs_placed(s), 10, "legs after the restart")
    assert [e for e in events(s, "leg_adopted", tk()) if e.data["leg"] == "tp1"]
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)
    _stop_out(s, pos)
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)


def test_killed_between_cancel_and_new_placement_of_a_break_even_move(make):
    s = make()
    pos = open_long(s)
    s.admin("/faults", {"after_accept_delay_ms": 3000, "path": "/api/v3/orderList"})  # the DELETE of tp2's OCO
    price(s, pos.tp1 + TICK)
    s.wait(lambda: any(o["clientOrderId"] == f"{pos.trade_key}-s2-0" and o["status"] == "CANCELED"
                       for o in s.orders()), 10, "tp2's old OCO cancelled")
    s.kill("exit_manager")
    assert leg(s, "tp2").status == "REPLACING" and leg(s, "tp2").attempt == 1
    assert not any(o["clientOrderId"] == f"{pos.trade_key}-s2-1" for o in s.orders())
    s.admin("/faults", {"clear": True})
    restart_exit_manager(s)
    wait_event(s, "break_even_done")
    s.wait(lambda: legs_placed(s) or all(lg.status in ("PLACED", "DONE") for lg in s.state().position.legs), 10,
           "moves finished")
    be = leg(s, "tp2").stop_price
    assert be >= pos.avg_entry and leg(s, "trail").stop_price == be
    price(s, be)
    wait_closed(s)
    assert_closed(s, pos.trade_key, "stop")
    assert_stops_only_tighten(s, pos.trade_key)
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)
