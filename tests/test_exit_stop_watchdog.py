"""The stop watchdog (SL_WATCHDOG_GRACE_SEC, SL_WATCHDOG_RETRY_SEC) on the real processes: a stop the market gapped
through rests unfilled; it is closed at market once passed for the grace, and a refused close is tried again every
SL_WATCHDOG_RETRY_SEC (not EXITS_RETRY_EVERY_SEC). The grace on a replay is in tests/test_exit_manager_gaps_and_moves.py."""
from __future__ import annotations

from decimal import Decimal

from shared.domain.exit_decide import flatten_retry_sec, watchdog_fires
from tests.test_exit_manager_support import (  # noqa: F401 - make is a fixture
    make,
    events,
    open_long,
    price,
    wait_event,
)

TICK = Decimal("0.01")


def test_the_grace_and_the_retry_window():
    assert not watchdog_fires(100.0, 102.9, 3) and watchdog_fires(100.0, 103.0, 3)
    assert watchdog_fires(100.0, 100.0, 0) and watchdog_fires(100.0, 100.0, -1)   # 0 or less: at once
    assert flatten_retry_sec("stop_gapped", 15, 5) == 5
    assert flatten_retry_sec("operator", 15, 5) == flatten_retry_sec("failsafe", 15, 5) == 15


def test_a_refused_watchdog_close_waits_sl_watchdog_retry_sec(make):
    s = make(SL_WATCHDOG_GRACE_SEC="0", SL_WATCHDOG_RETRY_SEC="7")
    pos = open_long(s)
    s.admin("/faults", {"reject_orders": 1, "path": "/api/v3/order", "side": "SELL"})
    price(s, pos.sl - TICK * 500, gap=True)   # through the stops' limits: they trigger and rest unfilled
    wait_event(s, "stop_gapped")
    ev = wait_event(s, "flatten_rejected")
    assert ev.trade_key == pos.trade_key and ev.data["reason"] == "stop_gapped" and ev.data["retry_in"] == 7
    assert not events(s, "flatten_filled", pos.trade_key)   # the market time stands still: no retry yet
