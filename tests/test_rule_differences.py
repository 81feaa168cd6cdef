"""Issue 23's decisions that differ from the original (README "The plan: the original's decisions", 17-21):
TRAIL_STEP_USD=0 refused, the entry's one-tick guard at every k, I2's break-even reference after TP1, and what
the signal parser and the feed reader do with a `price: 0`, a non-ISO timestamp and a torn last row."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal as D

import pytest

from shared.adapters.agg_feed import read_last_bars
from shared.config import ConfigError, load_config
from shared.domain.bars import AGG_HEADER_LINE, format_ts
from shared.domain.exit_plan import build_plan, entry_price, feed_plan, reprice
from shared.domain.invariants import Params, check_i2
from shared.domain.messages import Reject, Signal
from shared.domain.peak import ParseParams, parse_line
from shared.domain.position import Leg, Position, State
from shared.domain.symbol import SymbolFilters

T, S = D("0.01"), D("0.00001")
F = SymbolFilters("BTCUSDC", "BTC", "USDC", T, S, S, D("9000"), D("5"))


# ---- 17: TRAIL_STEP_USD=0 ----------------------------------------------------------------------------------

@pytest.mark.parametrize("value", ["0", "0.0", "-5"])
def test_a_trail_step_of_zero_or_less_stops_start_up_naming_it(value):
    with pytest.raises(ConfigError, match="TRAIL_STEP_USD=.* must be > 0 .*default 20"):
        load_config({"TRAIL_STEP_USD": value})


def test_a_positive_trail_step_is_kept():
    assert load_config({"TRAIL_STEP_USD": "0.5"}).TRAIL_STEP_USD == D("0.5")
    assert load_config({}).TRAIL_STEP_USD == D("20.0")


# ---- 18: the entry a tick beyond the close at every k ------------------------------------------------------

@pytest.mark.parametrize("side, close, offset, want", [
    ("long", D("95000.005"), D("0.001"), D("95000.02")),     # §3 alone: 95000.01, half a tick from the close
    ("short", D("95000.005"), D("0.001"), D("94999.99")),    # §3 alone: 95000.00, half a tick from the close
    ("long", D("95000.00"), D("0.5"), D("95000.50")),        # a close on the tick: unchanged
])
def test_at_k_one_the_entry_stays_a_tick_beyond_a_close_finer_than_the_tick(side, close, offset, want):
    p = build_plan(side, close, F, offset=offset, qty_usd=D("100"), sl_pct=D("0.002"), r_list=(D(1), D(2)),
                   swing_extreme=None)
    assert p.k == 1 and p.entry_price == want
    assert abs(p.entry_price - close) >= T
    # the same guard as at any other k: the next k basis_k can give (1 + 1e-12) gives the same entry
    fp = feed_plan(side, close, None, offset=offset, sl_pct=D("0.002"), r_list=(D(1), D(2)), tick=T)
    near = reprice(side, fp, close, D("1.000000000001"), T)
    assert near.entry == want
    assert entry_price(side, close, offset, T) == fp.entry   # §3 itself is the original's


def test_at_k_one_a_plan_already_a_tick_beyond_is_returned_as_it_is():
    fp = feed_plan("long", D("95000.00"), None, offset=D("0.5"), sl_pct=D("0.002"), r_list=(D(1), D(2)), tick=T)
    assert reprice("long", fp, D("95000.00"), D(1), T) is fp


# ---- 19: I2 after break-even -------------------------------------------------------------------------------

TK = "250113-2000-L-abc123"
NOW = 1_800_000_000.0


def _position(side: str, avg_entry: D, be_stop: D) -> Position:
    """The chaos run's case: planned entry 113080.50, filled worse (Plan B market) at `avg_entry`, TP1 done and
    the other legs' stops moved to break-even `be_stop`."""
    s = D(1) if side == "long" else D(-1)
    e = D("113080.50")
    gap = s * D("0.02")
    legs = [Leg(name="tp1", qty=D("0.0003"), tp_price=e + s * 200, stop_price=e - s * 200,
                stop_limit=e - s * 200 - gap, status="DONE", exit_reason="tp", filled_qty=D("0.0003")),
            Leg(name="tp2", qty=D("0.0003"), tp_price=e + s * 400, stop_price=be_stop, stop_limit=be_stop - gap,
                status="PLACED"),
            Leg(name="trail", qty=D("0.0003"), stop_price=be_stop, stop_limit=be_stop - gap, status="PLACED")]
    return Position(trade_key=TK, signal_key="k", symbol="BTCUSDC", side=side, status="OPEN_FILLED",
                    entry_mode="LIMIT_THEN_MARKET", entry_price=e, qty=D("0.0009"), sl=be_stop, tp1=e + s * 200,
                    tp2=e + s * 400, r=D(200), signal_price=e, signal_ts=NOW - 500, created_at=NOW - 400,
                    entry_client_id=f"{TK}-en-0", entry_order_id=42, filled_qty=D("0.0009"), avg_entry=avg_entry,
                    filled_at=NOW - 300, be_done=True, legs=legs)


@pytest.mark.parametrize("side, avg_entry, be_stop", [
    ("long", D("113152.3724"), D("113152.37")),     # the chaos run's message: tp2 stop 113152.37, entry 113080.50
    ("short", D("113010.1151"), D("113010.12")),
])
def test_i2_after_break_even_takes_the_average_fill_as_reference(side, avg_entry, be_stop):
    assert check_i2(State(position=_position(side, avg_entry, be_stop)), None, NOW, Params()) == []


@pytest.mark.parametrize("side, be_stop", [("long", D("113160.00")), ("short", D("113000.00"))])
def test_i2_still_reports_a_stop_past_the_average_fill(side, be_stop):
    avg = D("113152.37") if side == "long" else D("113010.12")
    f = check_i2(State(position=_position(side, avg, be_stop)), None, NOW, Params())
    assert [(x.check, x.severity) for x in f] == [("I2", "ERROR")]
    assert f"leg tp2 stop {be_stop} not on the losing side of entry" in f[0].message


def test_i2_before_tp1_the_average_fill_is_no_excuse():
    pos = _position("long", D("113152.3724"), D("113152.37"))
    pos.be_done = False
    pos.legs[0].status, pos.legs[0].exit_reason = "PLACED", ""
    f = check_i2(State(position=pos), None, NOW, Params())
    assert [(x.check, x.severity) for x in f] == [("I2", "ERROR")] and "before TP1" in f[0].message


# ---- 20, 21: what the parser and the feed reader refuse or wait for ------------------------------------------

def _line(**over: object) -> bytes:
    d = {"ts": "2025-01-13T20:00:12Z", "action": "PEAK", "source": "DeltaScout", "kind": "long", "price": 95000.0,
         "delta": 1.0, "vol": 2.0, "imb": 0.5, **over}
    return json.dumps(d).encode()


@pytest.mark.parametrize("over, why", [
    ({"price": 0}, "bad_price"), ({"ts": "1736798412"}, "bad_ts"), ({"ts": "13/01/2025 20:00:12"}, "bad_ts"),
])
def test_price_zero_and_a_non_iso_timestamp_are_rejected(over, why):
    now = datetime(2025, 1, 13, 20, 1, tzinfo=timezone.utc).timestamp()
    ok = parse_line(_line(), offset=0, now=now, params=ParseParams())
    assert isinstance(ok, Signal)
    got = parse_line(_line(**over), offset=0, now=now, params=ParseParams())
    assert isinstance(got, Reject) and got.reason == why


def test_a_torn_last_row_of_the_feed_waits_for_its_newline(tmp_path):
    ts0 = 1_736_798_400
    rows = [f"{format_ts(ts0 + 60 * i)},10,1.0,0.1,0.5,0.5,95000,95000,95010,94990" for i in range(3)]
    feed = tmp_path / "aggregated.csv"
    last = f"{format_ts(ts0 + 180)},10,1.0,0.1,0.5,0.5,95000,95000,95010,94990"
    cut = last.index(",950") + 4      # the writer stopped inside the price: "...,950" would read as 950
    feed.write_text("\n".join([AGG_HEADER_LINE, *rows]) + "\n" + last[:cut])
    read = read_last_bars(feed, 10)
    assert [b.ts for b in read.bars] == [ts0, ts0 + 60, ts0 + 120] and read.bad_rows == 0
    with open(feed, "a") as f:
        f.write(last[cut:] + "\n")
    read = read_last_bars(feed, 10)
    assert [b.ts for b in read.bars][-1] == ts0 + 180 and read.bars[-1].close == D("95000")
