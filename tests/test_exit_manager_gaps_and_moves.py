"""The exit manager against what real Binance does, through the real processes on real Redis and the paper exchange:
a gap in the replayed bars (the stops trigger at the first traded price and rest unfilled: the position must not
stay unprotected), and every reaction to a failed trailing cancelReplace (-2022 with the old stop still resting,
-2021 with the old stop cancelled, -2022 because the old stop already filled)."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec

from shared.adapters.market_files import write_bars
from shared.domain.bars import Bar
from tests.test_exit_manager_support import (  # noqa: F401 - make is a fixture
    assert_closed,
    assert_no_duplicates,
    events,
    leg,
    make,
    open_long,
    price,
    settle,
    start_stack,
    wait_closed,
    wait_event,
)

GAP = Decimal(3000)


def _with_gap(bars: list[Bar], at: int) -> list[Bar]:
    """The bars with everything from `at` on 3000 lower: bar `at` opens far below the previous close."""
    def down(b: Bar) -> Bar:
        return msgspec.structs.replace(b, avg_price=b.avg_price - GAP, close=b.close - GAP, high=b.high - GAP,
                                       low=b.low - GAP)
    return bars[:at] + [down(b) for b in bars[at:]]


def test_a_gap_in_the_replay_leaves_the_stops_resting_and_the_position_is_flattened(tmp_path: Path, redis_url,
                                                                                   market_bars, moment):
    start = moment.index + 1
    gap_at = start + 2
    bars = _with_gap(market_bars[:start + 400], gap_at)
    market = tmp_path / "gapped.aggregated.csv"
    write_bars(market, bars)
    s = start_stack(tmp_path, redis_url, market, bars[start].ts)
    try:
        pos = open_long(s)
        prev_close, first = bars[gap_at - 1].close, bars[gap_at].high
        assert first < pos.sl - 1000 < prev_close  # the stops sit inside the gap
        for _ in range(12):  # to the gapped bar's jump, point by point
            if s.state().position is None or events(s, "stop_gapped", pos.trade_key):
                break
            s.admin("/advance", {"points": 1})
            settle(0.2)
        wait_closed(s)
        gapped = events(s, "stop_gapped", pos.trade_key)
        assert gapped, "the stops rested unfilled but no gap was seen"
        # SL_WATCHDOG_GRACE_SEC (default 3): the close waited until the stop had been passed that long (a later point)
        assert gapped[0].data["passed_sec"] >= gapped[0].data["grace_sec"] == 3
        assert_closed(s, pos.trade_key, "flatten:stop_gapped")
        assert events(s, "flatten_filled", pos.trade_key)
        lc = s.state().last_closed
        assert lc.avg_exit < pos.sl - 1000  # where the market traded after the gap, not at the stop
        stops = [o for o in s.orders() if o["clientOrderId"].startswith(pos.trade_key)
                 and o["type"] == "STOP_LOSS_LIMIT"]
        assert stops and all(Decimal(o["executedQty"]) == 0 for o in stops)  # none filled: they could not
        assert_no_duplicates(s, pos.trade_key, pos.filled_qty)
    finally:
        s.stop_all()


# ---- a trailing move by cancelReplace that fails --------------------------------------------------------------

TICK = Decimal("0.01")
CR = "/api/v3/order/cancelReplace"


def _trailing(make, moment):
    """A long through TP1 and TP2 on the demo's moment: the trailing leg rests and trailing is on."""
    from tests.test_exit_manager_trailing import _replay_until
    s = make()
    pos = open_long(s)
    _replay_until(s, lambda: bool(events(s, "trailing_on", pos.trade_key)), (moment.bars_to_tp2 + 30) * 2)
    s.wait(lambda: leg(s, "trail").status == "PLACED", 10, "trailing leg resting")
    return s, pos


def _next_trailing_move(s, pos, moment, after: int):
    """Replay until the trailing stop is moved past attempt `after`; that stop_move event (recorded before the
    request is sent)."""
    from tests.test_exit_manager_trailing import _replay_until

    def moved():
        return [e for e in events(s, "stop_move", pos.trade_key)
                if e.data["why"] == "trailing" and e.data["attempt"] > after]
    _replay_until(s, lambda: bool(moved()), (moment.bars_after_tp2 + 60) * 2)
    return moved()[0]


def _open_by_id(s, cid):
    return next((o for o in s.open_orders() if o["clientOrderId"] == cid), None)


def test_trail_move_refused_by_a_filter_keeps_the_old_stop(make, moment):
    """-2022, both parts failed (Binance checks the new order's filters before cancelling): the old stop is still
    resting on the exchange, so the exit manager keeps it (no cancel, no unprotected moment, no retry storm)."""
    s, pos = _trailing(make, moment)
    old = leg(s, "trail")
    s.admin("/faults", {"filter_failure": -1, "path": CR})
    s.admin("/faults", {"filter_failure": -1, "path": "/api/v3/order"})  # a separate place would be refused too
    move = _next_trailing_move(s, pos, moment, old.attempt)
    kept = wait_event(s, "stop_move_refused_old_kept")
    assert Decimal(str(kept.data["kept"])) == old.stop_price and Decimal(str(move.data["stop"])) > old.stop_price
    s.wait(lambda: leg(s, "trail").status == "PLACED", 10, "leg back on its resting stop")
    lg = leg(s, "trail")
    assert (lg.stop_client_id, lg.stop_price, lg.attempt) == (old.stop_client_id, old.stop_price, old.attempt)
    resting = _open_by_id(s, old.stop_client_id)
    assert resting is not None and Decimal(resting["stopPrice"]) == old.stop_price  # never cancelled
    assert not events(s, "leg_rejected", pos.trade_key) and not events(s, "flatten_requested", pos.trade_key)
    s.admin("/faults", {"clear": True})
    price(s, old.stop_price)  # the kept stop still protects the position
    wait_closed(s)
    assert_closed(s, pos.trade_key, "stop")
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)


def test_trail_move_whose_new_stop_would_trigger_leaves_nothing_resting_and_flattens(make, moment):
    """-2021: the old stop is cancelled and the matching engine refuses the new one (the market fell to it while
    the request was on its way). Nothing rests: the exit manager must not wait for a stop that is not there."""
    s, pos = _trailing(make, moment)
    old = leg(s, "trail")
    s.admin("/faults", {"latency_ms": 3500, "count": 1, "path": CR})
    move = _next_trailing_move(s, pos, moment, old.attempt)
    new_stop = Decimal(str(move.data["stop"]))
    price(s, ((old.stop_price + new_stop) / 2).quantize(TICK))  # between the two stops, during the latency
    ev = wait_event(s, "cancel_replace_failed")
    assert ev.data.get("old_stop") == "cancelled"
    assert wait_event(s, "leg_would_trigger").data["reason"] == "stop_immediate"
    wait_closed(s)
    assert_closed(s, pos.trade_key, "flatten:stop_immediate")
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)


def test_trail_move_after_the_old_stop_filled_settles_the_leg(make, moment):
    """-2022, cancel failed (-2011): the old stop filled while the request was on its way. No new stop is placed;
    the leg is settled as stopped."""
    s, pos = _trailing(make, moment)
    old = leg(s, "trail")
    s.admin("/faults", {"latency_ms": 3500, "count": 1, "path": CR})
    move = _next_trailing_move(s, pos, moment, old.attempt)
    price(s, old.stop_price - TICK)  # through the old stop, during the latency: it fills at its price
    ev = wait_event(s, "cancel_replace_failed")
    assert (ev.data["cancel_result"], ev.data["new_result"]) == ("FAILURE", "NOT_ATTEMPTED")
    assert ev.data["cancel_error"][0] == -2011
    wait_closed(s)
    assert_closed(s, pos.trade_key, "stop")
    assert s.state().last_closed.legs[-1].exit_reason == "stop"
    new_id = f"{pos.trade_key}-tr-{move.data['attempt']}"
    assert not [o for o in s.orders() if o["clientOrderId"] == new_id]  # the new stop was never placed
    assert_no_duplicates(s, pos.trade_key, pos.filled_qty)
