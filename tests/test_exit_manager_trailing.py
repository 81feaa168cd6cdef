"""Trailing after TP2 on replayed market rows, through the real processes: the stop follows swing lows of the
live aggregated.csv, only upwards; a wrong header fails loud, a missing or stale file fails closed; and a
SIGKILL in the middle of a trailing move is resumed without a second stop."""
from __future__ import annotations

import shutil
import time
from decimal import Decimal
from pathlib import Path

import pytest

from shared.domain.moments import Moment, find_moment
from shared.config import load_config
from shared.domain.symbol import SymbolFilters
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
    restart_exit_manager,
    start_stack,
    trade_orders,
    wait_closed,
    wait_event,
)

TICK = Decimal("0.01")


def _short_moment(bars) -> Moment:
    """The demo's moment finder for a short: the quickest short in the data that reaches TP2 without touching its
    stop, then rises enough after it for the trailing stop to move and be hit."""
    cfg = load_config({})
    f = SymbolFilters(cfg.SYMBOL, "BTC", "USDC", cfg.TICK_SIZE, cfg.QTY_STEP, cfg.MIN_QTY, Decimal(9000),
                      cfg.MIN_NOTIONAL)
    try:
        return find_moment(bars, cfg, f, side="short")
    except LookupError as e:
        pytest.skip(str(e))


def _replay_until(s: Stack, done, max_points: int) -> None:
    """Play the market two points at a time, letting the exit manager see each step, until `done()`."""
    for _ in range(max_points):
        if done():
            return
        before = s.state().version
        s.admin("/advance", {"points": 2})  # 30 market seconds
        time.sleep(0.06)  # about one tick of the exit manager
        _quiet(s, before)
    assert done(), "the replay ended before the condition"


def _quiet(s: Stack, before: int) -> None:
    """When the exit manager is acting on this point, let it finish first (its state version settles)."""
    last, deadline = s.state().version, time.monotonic() + 2.0
    while last != before and time.monotonic() < deadline:
        time.sleep(0.05)
        before, last = last, s.state().version


def test_tp1_tp2_then_trailing_stop_on_real_rows(make, moment):
    s = make()
    pos = open_long(s)
    _replay_until(s, lambda: s.state().position is None, (moment.bars_to_tp2 + moment.bars_after_tp2 + 90) * 2)
    assert_closed(s, pos.trade_key, "stop")
    reasons = {lg.name: lg.exit_reason for lg in s.state().last_closed.legs}
    assert reasons == {"tp1": "tp", "tp2": "tp", "trail": "stop"}
    assert events(s, "trailing_on", pos.trade_key)
    moves = [e for e in events(s, "stop_move", pos.trade_key) if e.data["why"] == "trailing"]
    assert moves, "the trailing stop never moved"
    assert_stops_only_tighten(s, pos.trade_key)
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)
    lc = s.state().last_closed
    trail_stop = Decimal(str(moves[-1].data["stop"]))
    assert lc.pnl_quote > 0 and trail_stop > pos.avg_entry


def test_short_tp1_tp2_then_trailing_stop_on_real_rows(tmp_path: Path, redis_url, market_file, market_bars):
    """The same on a short (cross margin, manual borrow): the stop follows swing highs, only downwards."""
    m = _short_moment(market_bars)
    s = start_stack(tmp_path, redis_url, market_file, market_bars[m.index + 1].ts, **MARGIN)
    try:
        pos = open_long(s, side="short")
        _replay_until(s, lambda: s.state().position is None, (m.bars_to_tp2 + m.bars_after_tp2 + 90) * 2)
        assert_closed(s, pos.trade_key, "stop")
        reasons = {lg.name: lg.exit_reason for lg in s.state().last_closed.legs}
        assert reasons == {"tp1": "tp", "tp2": "tp", "trail": "stop"}
        assert events(s, "trailing_on", pos.trade_key)
        moves = [e for e in events(s, "stop_move", pos.trade_key) if e.data["why"] == "trailing"]
        assert moves, "the trailing stop never moved"
        assert_stops_only_tighten(s, pos.trade_key, "short")
        assert_no_duplicates(s, pos.trade_key, pos.filled_qty, "short")
        lc = s.state().last_closed
        trail_stop = Decimal(str(moves[-1].data["stop"]))
        assert lc.pnl_quote > 0 and trail_stop < pos.avg_entry
    finally:
        s.stop_all()


def test_kill_during_a_trailing_move_resumes_it(make, moment):
    s = make()
    pos = open_long(s)
    # Hold back cancelReplace replies from after break-even (the trail leg's own move to BE is a cancelReplace
    # too) so that the first one held is the trailing stop's, even when it moves at its activation.
    _replay_until(s, lambda: bool(events(s, "break_even_done", pos.trade_key)), (moment.bars_to_tp2 + 30) * 2)
    s.admin("/faults", {"after_accept_delay_ms": 3000, "path": "/api/v3/order/cancelReplace"})
    moved = lambda: [e for e in events(s, "stop_move", pos.trade_key) if e.data["why"] == "trailing"]
    _replay_until(s, lambda: bool(moved()), (moment.bars_to_tp2 + moment.bars_after_tp2 + 60) * 2)
    attempt = moved()[0].data["attempt"]
    new_id = f"{pos.trade_key}-tr-{attempt}"
    s.wait(lambda: any(o["clientOrderId"] == new_id for o in s.orders()), 5, "new trailing stop on the exchange")
    s.kill("exit_manager")  # SIGKILL while the cancelReplace reply is held back
    assert leg(s, "trail").status == "REPLACING"
    s.admin("/faults", {"clear": True})
    restart_exit_manager(s)
    s.wait(lambda: leg(s, "trail").status == "PLACED", 10, "trailing move resumed")
    assert events(s, "leg_adopted", pos.trade_key)
    _replay_until(s, lambda: s.state().position is None, (moment.bars_after_tp2 + 90) * 2)
    assert_closed(s, pos.trade_key, "stop")
    assert_stops_only_tighten(s, pos.trade_key)
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)


def _feed_copy(s: Stack, tmp: Path) -> Path:
    dst = tmp / "em_feed.csv"
    shutil.copy(s.env["PAPER_FEED_CSV"], dst)
    return dst


@pytest.mark.parametrize("fault", ["bad_header", "missing", "stale"])
def test_trailing_feed_faults_move_nothing(make, tmp_path: Path, fault: str):
    s = make(AGG_CSV=str(tmp_path / "em_feed.csv"))
    feed = _feed_copy(s, tmp_path)
    pos = open_long(s)
    rows = feed.read_text().splitlines()
    if fault == "bad_header":
        feed.write_text("\n".join(["Timestamp,Trades,Qty"] + rows[1:]) + "\n")
    elif fault == "missing":
        feed.unlink()
    else:
        feed.write_text("\n".join(rows[:-10]) + "\n")  # its last bar is 10 minutes old
    price(s, pos.tp2 + TICK)
    wait_event(s, "trailing_on")
    kind = {"bad_header": "trail_feed_bad_header", "missing": "trail_feed_missing", "stale": "trail_feed_stale"}[fault]
    ev = wait_event(s, kind)
    assert ev.data["action"] == "no move"
    if fault != "stale":
        s.wait(lambda: any(a["event"] == kind for a in alerts(s, pos.trade_key)), 5, "alert queued")
    assert not [e for e in events(s, "stop_move", pos.trade_key) if e.data["why"] == "trailing"]
    s.wait(lambda: leg(s, "trail").status == "PLACED", 10, "trail stop resting")
    price(s, leg(s, "trail").stop_price)
    wait_closed(s)
    assert_closed(s, pos.trade_key, "stop")
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)
    assert len(trade_orders(s, pos.trade_key)) > 0
