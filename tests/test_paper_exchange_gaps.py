"""Gaps in the replayed bars (aggregated.csv has no open price): when a bar's [LowPrice, HiPrice] does not hold the
previous close, the prices between were not traded. A stop between them triggers at the bar's first traded price
(its HiPrice after a fall, its LowPrice after a rise) and fills there (STOP_LOSS), or rests unfilled when its limit
is not reachable there (STOP_LOSS_LIMIT), as on Binance. Real paper exchange over HTTP, replaying a real file."""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from shared.adapters.market_files import write_bars
from shared.domain.bars import Bar
from tests.pe_helpers import HISTORY, SYMBOL, Paper, paper_env, sample_bars

Q = Decimal("0.001")
JUMP = Decimal(900)


def _gapped_bars(direction: int) -> list[Bar]:
    """The sample bars with everything from bar HISTORY + 1 on shifted by 900 (down: -1, up: +1)."""
    bars = sample_bars()
    cut = HISTORY + 1
    shift = JUMP * direction

    def moved(b: Bar) -> Bar:
        return msgspec.structs.replace(b, avg_price=b.avg_price + shift, close=b.close + shift,
                                       high=b.high + shift, low=b.low + shift)
    return bars[:cut] + [moved(b) for b in bars[cut:]]


@pytest.fixture
def gap_pe(tmp_path: Path, request):
    direction = request.param
    bars = _gapped_bars(direction)
    write_bars(tmp_path / "market.aggregated.csv", bars)
    p = Paper(paper_env(tmp_path))
    p.bars = bars
    yield p
    p.stop()


def _to_the_gap(p: Paper) -> None:
    """Play bar HISTORY's remaining points and the next bar's open (= the previous close): the market is just
    before the jump."""
    p.post("/admin/advance", {"points": 4})
    assert p.last() == p.bars[HISTORY].close


def _stop(c, side, kind, stop, limit=None, cid="g1"):
    kw = {"price": limit, "time_in_force": "GTC"} if kind == "STOP_LOSS_LIMIT" else {}
    return c.place_order(SYMBOL, side, kind, Q, stop_price=stop, client_order_id=cid, **kw)


@pytest.mark.parametrize("gap_pe", [-1], indirect=True)
def test_a_stop_market_inside_a_down_gap_fills_at_the_first_traded_price(gap_pe):
    p, c = gap_pe, gap_pe.client()
    _to_the_gap(p)
    prev_close, first = p.bars[HISTORY].close, p.bars[HISTORY + 1].high
    assert first < prev_close - 500  # a real gap: nothing traded in between
    stop = prev_close - 100
    _stop(c, "SELL", "STOP_LOSS", stop)
    p.post("/admin/advance", {"points": 1})  # the jump
    assert p.last() == first
    o = p.order("g1")
    assert o["status"] == "FILLED"
    fill = Decimal(o["fills"][0]["price"])
    assert fill <= first and fill < stop - 500  # where the market traded, not the stop price


@pytest.mark.parametrize("gap_pe", [-1], indirect=True)
def test_a_stop_limit_gapped_past_its_limit_triggers_and_rests_unfilled(gap_pe):
    p, c = gap_pe, gap_pe.client()
    _to_the_gap(p)
    stop = p.bars[HISTORY].close - 100
    _stop(c, "SELL", "STOP_LOSS_LIMIT", stop, limit=stop - 10)
    p.post("/admin/advance", {"points": 3})  # the jump, then the rest of the gapped bar (below the limit)
    o = p.order("g1")
    assert (o["status"], o["isWorking"], o["executedQty"]) == ("NEW", True, "0.00000000")
    assert Decimal(p.balances()["BTC"][1]) == Q  # still locked: a resting limit order


@pytest.mark.parametrize("gap_pe", [-1], indirect=True)
def test_a_stop_limit_whose_limit_is_reachable_fills_at_the_book_after_the_gap(gap_pe):
    p, c = gap_pe, gap_pe.client()
    _to_the_gap(p)
    stop = p.bars[HISTORY].close - 100
    _stop(c, "SELL", "STOP_LOSS_LIMIT", stop, limit=stop - 2000)
    p.post("/admin/advance", {"points": 1})
    o = p.order("g1")
    bid = Decimal(p.get("/admin/state")["bid"])
    assert o["status"] == "FILLED" and Decimal(o["fills"][0]["price"]) == bid < stop - 500


@pytest.mark.parametrize("gap_pe", [1], indirect=True)
def test_a_buy_stop_inside_an_up_gap_fills_at_the_first_traded_price(gap_pe):
    p, c = gap_pe, gap_pe.client()
    _to_the_gap(p)
    prev_close, first = p.bars[HISTORY].close, p.bars[HISTORY + 1].low
    assert first > prev_close + 500
    stop = prev_close + 100
    _stop(c, "BUY", "STOP_LOSS", stop)
    p.post("/admin/advance", {"points": 1})
    o = p.order("g1")
    assert o["status"] == "FILLED" and Decimal(o["fills"][0]["price"]) >= first > stop + 500


@pytest.mark.parametrize("gap_pe", [-1], indirect=True)
def test_a_stop_below_the_gap_still_fills_where_the_path_crosses_it(gap_pe):
    """After the jump the bar trades continuously from its high down to its low: a stop there is crossed, not
    gapped, and a stop-limit fills at its stop price's market."""
    p, c = gap_pe, gap_pe.client()
    _to_the_gap(p)
    nxt = p.bars[HISTORY + 1]
    if nxt.high - nxt.low < Decimal("1"):
        pytest.skip("the gapped bar has no range to cross")
    stop = (nxt.high + nxt.low) / 2
    stop = stop.quantize(Decimal("0.01"))
    _stop(c, "SELL", "STOP_LOSS_LIMIT", stop, limit=stop - 50)
    p.post("/admin/advance", {"points": 2})  # jump to the high, then down to the low through the stop
    o = p.order("g1")
    assert o["status"] == "FILLED" and Decimal(o["fills"][0]["price"]) == stop


@pytest.mark.parametrize("gap_pe", [-1], indirect=True)
def test_a_resting_triggered_stop_limit_makes_every_point_active(gap_pe):
    """A stop-limit the market gapped past rests working: the exit side watches it at every point, so a replay's
    quiet jump (`until_active`) plays one point at a time while it rests."""
    p, c = gap_pe, gap_pe.client()
    _to_the_gap(p)
    stop = p.bars[HISTORY].close - 100
    _stop(c, "SELL", "STOP_LOSS_LIMIT", stop, limit=stop - 10)
    p.post("/admin/advance", {"points": 1})  # the jump: triggered, unfilled
    assert p.order("g1")["isWorking"] is True
    far = p.bars[-1].ts
    assert p.post("/admin/advance", {"to_ts": far, "until_active": True})["advanced"] == 1
    assert p.post("/admin/advance", {"to_ts": far, "until_active": True})["advanced"] == 1
