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
    open_long,
    settle,
    start_stack,
    wait_closed,
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
        assert events(s, "stop_gapped", pos.trade_key), "the stops rested unfilled but no gap was seen"
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
