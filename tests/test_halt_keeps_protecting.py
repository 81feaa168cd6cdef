"""The halt flag (the I13 kill switch, or an operator) stops new entries while a protected position still
runs to its exit, on the real stack."""
from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest

from tests.stack import Stack


@pytest.fixture()
def stack(tmp_path: Path, redis_url, market_file, market_bars, moment):
    s = Stack(tmp_path, redis_url, market_file, market_bars[moment.index + 1].ts, COOLDOWN_SEC="0", LOCK_SEC="0")
    s.start_all()
    yield s, market_bars[moment.index].close
    s.stop_all()


def test_halt_stops_entries_but_the_open_position_still_exits(stack):
    s, price = stack
    s.append_peak("long", price)
    s.wait(lambda: len([o for o in s.open_orders() if "-en-" not in o["clientOrderId"]]) == 5, 30,
           "the position protected by its three legs")
    # What the watchdog's I13 kill switch writes (services/watchdog): the flag with who and why.
    s.r.set(f"{s.prefix}halt", json.dumps({"by": "watchdog", "check": "I13", "reason": "margin debt after close"}))
    s.admin("/speed", {"speed": 240})
    s.wait(lambda: s.state().closed_count == 1 and s.state().position is None, 120, "the position closed while halted")
    assert s.open_orders() == []
    s.admin("/speed", {"speed": 0})
    s.append_peak("long", Decimal(s.admin("/state")["last"]))
    ignored = s.wait(lambda: [e for e in s.events("signal_ignored") if e.data.get("reason") == "halted"], 20,
                     "the next signal refused while halted")
    assert ignored and s.state().position is None
    assert len([o for o in s.orders() if "-en-" in o["clientOrderId"]]) == 1, "an entry was sent while halted"
