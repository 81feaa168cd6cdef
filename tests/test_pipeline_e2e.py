"""One PEAK signal becomes one complete trade through separate processes on real Redis and the paper
exchange; and the same with position_engine SIGKILLed between sending the entry and its reply."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from tests.stack import Stack

OPEN = ("NEW", "PARTIALLY_FILLED")


@pytest.fixture()
def stack(tmp_path: Path, redis_url, market_file, market_bars, moment):
    s = Stack(tmp_path, redis_url, market_file, market_bars[moment.index + 1].ts)
    s.start_all()
    yield s
    s.stop_all()


def _entry_orders(s: Stack) -> list[dict]:
    return [o for o in s.orders() if "-en-" in o["clientOrderId"]]


def _exit_legs_resting(s: Stack) -> bool:
    opened = [o for o in s.open_orders() if "-en-" not in o["clientOrderId"]]
    lists = {o["orderListId"] for o in opened if o["orderListId"] != -1}
    stops = [o for o in opened if o["orderListId"] == -1 and o["type"] == "STOP_LOSS_LIMIT"]
    return len(lists) == 2 and len(stops) == 1 and len(opened) == 5


def _run_to_close(s: Stack, closed_before: int = 0) -> None:
    s.admin("/speed", {"speed": 240})
    s.wait(lambda: s.state().closed_count > closed_before and s.state().position is None, 120, "position closed")


def _assert_closed_cleanly(s: Stack) -> None:
    st = s.state()
    assert st.position is None and st.last_closed is not None
    assert s.open_orders() == [], "orders of the closed trade are still open"
    # The state in Redis and the file snapshot agree (the file is written right after the Redis commit).
    s.wait(lambda: s.snapshot().version == s.state().version, 10, "snapshot caught up with Redis")
    snap, st = s.snapshot(), s.state()
    assert snap.last_closed == st.last_closed and snap.position is None
    # The recorded result equals the exchange's fills: what was bought was sold, at the exchange's prices.
    fills = [o for o in s.orders() if o["status"] in ("FILLED", "PARTIALLY_FILLED", "CANCELED", "EXPIRED")
             and Decimal(o["executedQty"]) > 0]
    bought = sum(Decimal(o["executedQty"]) for o in fills if o["side"] == "BUY")
    sold = sum(Decimal(o["executedQty"]) for o in fills if o["side"] == "SELL")
    closed = st.last_closed
    assert sold == closed.qty
    # Everything held was sold but the dust below one step (the entry's commission was taken in BTC).
    assert Decimal(0) <= bought - closed.entry_fee_base - sold < Decimal("0.00001")
    quote_in = sum(Decimal(o["cummulativeQuoteQty"]) for o in fills if o["side"] == "SELL")
    assert abs(quote_in - closed.avg_entry * sold - closed.pnl_quote) < Decimal("0.001")


def test_one_signal_one_complete_trade(stack: Stack, market_bars, moment):
    s = stack
    s.append_peak("long", market_bars[moment.index].close)
    s.wait(lambda: any(o["status"] == "FILLED" for o in _entry_orders(s)), 20, "entry filled on the exchange")
    s.wait(lambda: _exit_legs_resting(s), 20, "three exit legs resting (2 OCO lists + trailing stop)")
    assert s.state().position.status == "OPEN_FILLED"
    _run_to_close(s)
    _assert_closed_cleanly(s)
    kinds = [e.kind for e in s.events()]
    assert "break_even_done" in kinds, "TP1 fill did not move the stop to break-even"
    assert "trailing_on" in kinds, "TP2 fill did not start trailing"
    assert len(_entry_orders(s)) == 1


def test_engine_killed_between_entry_send_and_reply(stack: Stack, market_bars, moment):
    s = stack
    s.admin("/faults", {"after_accept_delay_ms": 5000, "path": "/api/v3/order", "side": "BUY"})
    s.append_peak("long", market_bars[moment.index].close)
    s.wait(lambda: len(_entry_orders(s)) == 1, 20, "entry order accepted by the exchange")
    s.kill("position_engine")  # SIGKILL while it waits for the reply
    s.admin("/faults", {"clear": True})
    assert s.state().position is not None and s.state().position.status == "PENDING"
    s.start("position_engine")
    s.wait(lambda: _exit_legs_resting(s), 30, "exit legs after the engine restarted")
    _run_to_close(s)
    _assert_closed_cleanly(s)
    assert len(_entry_orders(s)) == 1, "a second entry order was sent"
    assert any(e.kind == "entry_open" for e in s.events())
