"""A very short seeded chaos run (60-90 s wall): the whole stack as separate processes (user_stream included),
kill -9 of every process, exchange faults and corrupted inputs, then the verdict from the exchange's own records.
A failure prints the seed and the violations; replay it with `python -m chaos --short --seed N`."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from chaos.run import Options, Run, report

SEED = int(os.environ.get("CHAOS_SEED", "11"))


@pytest.mark.chaos
def test_short_chaos_has_no_violation(tmp_path: Path):
    opts = Options(seed=SEED, duration=30.0, speed=120.0, mean_gap=1.2, settle=15.0, random_every_bars=12.0,
                   run_dir=str(tmp_path / "chaos"), quiet=True, user_stream=True)
    run = Run(opts)
    run.prepare()
    assert "user_stream" in run.services and "user_stream" in run.killable
    try:
        verdict = run.execute()
    finally:
        run.stack.stop_all()
    out = report(run, verdict)
    assert run.kills, "no process was killed"
    assert out["violations"] == [], (f"chaos seed {SEED}: {len(out['violations'])} violations (replay: "
                                     f"python -m chaos --short --seed {SEED})\n" + "\n".join(out["violations"]))


# ---- the command line (fast, no stack) ------------------------------------------------------------------------

from chaos.__main__ import options, parse  # noqa: E402
from chaos.run import replay_args  # noqa: E402


def test_user_stream_is_on_by_default_and_can_be_left_out():
    assert Options().user_stream is True
    assert options(parse(["--short"])).user_stream is True
    assert options(parse(["--short", "--user-stream"])).user_stream is True
    off = options(parse(["--short", "--seed", "4", "--no-user-stream"]))
    assert off.user_stream is False
    # the replay line plans the same run again: --short (random_every_bars) and --no-user-stream (killable set)
    assert replay_args(off) == "--short --seed 4 --duration 50 --speed 120 --mean-gap 2.5 --settle 30 --no-user-stream"
    assert options(parse(replay_args(off).split())) == off
    on = options(parse(["--seed", "7"]))
    assert "--no-user-stream" not in replay_args(on) and "--short" not in replay_args(on)
    assert options(parse(replay_args(on).split())) == on


# ---- the checker itself (fast, no stack): it must see each kind of violation ---------------------------------

from decimal import Decimal  # noqa: E402

import msgspec  # noqa: E402

from chaos.checks import Evidence, verify  # noqa: E402
from chaos.inputs import Written  # noqa: E402
from shared.domain.messages import Event, Reject, Signal  # noqa: E402
from shared.domain.orders import Trade  # noqa: E402
from shared.domain.position import State  # noqa: E402

TK, KEY = "250101-0000-L-abcdef", "PEAK|2025-01-01T00:00|long|95000.0"


def _order(oid, leg, typ, side, status, qty, quote, t):
    return {"orderId": oid, "clientOrderId": f"{TK}-{leg}-0", "orderListId": -1, "type": typ, "side": side,
            "status": status, "origQty": "0.00100000", "executedQty": qty, "cummulativeQuoteQty": quote,
            "time": t, "updateTime": t}


def _evidence(**changes) -> Evidence:
    orders = [_order(1, "en", "LIMIT", "BUY", "FILLED", "0.00100000", "95.00000000", 1000),
              _order(2, "s1", "STOP_LOSS_LIMIT", "SELL", "EXPIRED", "0", "0", 1000),
              _order(3, "p1", "LIMIT_MAKER", "SELL", "FILLED", "0.00100000", "96.00000000", 5000)]
    trades = {1: [Trade(symbol="BTCUSDC", id=1, order_id=1, price=Decimal(95000), qty=Decimal("0.001"),
                        quote_qty=Decimal(95), commission=Decimal("0.000001"), commission_asset="BTC", time=1000,
                        is_buyer=True, is_maker=False)]}
    ev = [(100_000, Event(service="position_engine", kind="entry_planned", at=1, trade_key=TK,
                          data={"signal_key": KEY, "qty": "0.001"})),
          (100_050, Event(service="position_engine", kind="entry_filled", at=1, trade_key=TK, data={})),
          (100_100, Event(service="exit_manager", kind="leg_placed", at=1, trade_key=TK, data={})),
          (101_000, Event(service="exit_manager", kind="position_closed", at=5, trade_key=TK,
                          data={"qty": "0.001", "avg_entry": "95000", "avg_exit": "96000", "pnl": "1.0"}))]
    base = dict(orders=orders, entry_trades=trades, events=ev,
                signals=[Signal(key=KEY, ts=0.0, kind="long", price=Decimal(95000))],
                rejects=[Reject(reason="bad_json", line="~c1~ not json")], state=State(),
                written=[Written('{"line": 1}', True, key=KEY), Written("~c1~ not json", False, token="~c1~",
                                                                       expect="bad_json")],
                window_target_sec=1.0, qty_step=Decimal("0.00001"))
    base.update(changes)
    return Evidence(**base)


def _check(ev: Evidence, stop_wall: float = 100.3) -> list[str]:
    return verify(ev, lambda _m: 100.0, lambda _m: stop_wall).violations


def test_checker_passes_a_clean_trade():
    assert _check(_evidence()) == []


def test_checker_sees_each_violation():
    clean = _evidence()
    second = dict(clean.orders[0], orderId=9, clientOrderId=f"{TK}-en-1")
    assert any("2 entry orders" in v for v in _check(_evidence(orders=clean.orders + [second])))
    still_open = [dict(o, status="NEW") if o["orderId"] == 2 else o for o in clean.orders]
    assert any("still NEW" in v for v in _check(_evidence(orders=still_open)))
    closed = msgspec.structs.replace(clean.events[3][1], data={**clean.events[3][1].data, "pnl": "1.5"})
    assert any("pnl" in v for v in _check(_evidence(events=clean.events[:3] + [(101_000, closed)])))
    assert any("valid line lost" in v for v in _check(_evidence(signals=[])))
    assert any("not on rejects" in v for v in _check(_evidence(rejects=[])))
    assert any("no decision" in v for v in _check(_evidence(events=clean.events[1:])))
    # the stop came 0.2 s after the fill at the earliest evidence; 5 s would break the 1 s target
    assert any("unprotected" in v for v in verify(_evidence(events=clean.events[:2] + clean.events[3:]),
                                                  lambda _m: 100.0, lambda _m: 105.0).violations)
