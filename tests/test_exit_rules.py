"""The pure rules of the exit phase: leg layout, reading the exchange's records, break-even, trailing."""
from __future__ import annotations

from decimal import Decimal

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from shared.domain.bars import Bar
from shared.domain.exit_rules import (
    LegFills,
    count_attempt,
    be_price,
    better,
    close_summary,
    dust,
    exit_total,
    failsafe_due,
    immediate_reason,
    leg_ids,
    nearest_stop,
    oco_stop_lost,
    plan_legs,
    read_attempt,
    remaining,
    share_out,
    short_exit_qty,
    trail_candidate,
    trail_move,
)
from shared.domain.orders import Order
from shared.domain.position import Leg, Position
from shared.domain.symbol import SymbolFilters
from tests.pe_helpers import pe  # noqa: F401 - the paper exchange fixture

D = Decimal
F = SymbolFilters("BTCUSDC", "BTC", "USDC", D("0.01"), D("0.00001"), D("0.00001"), D(9000), D(5))


def _pos(**kw) -> Position:
    base = {"trade_key": "250118-2009-L-f6228d", "signal_key": "k", "symbol": "BTCUSDC", "side": "long",
            "status": "OPEN_FILLED", "entry_mode": "LIMIT", "entry_price": D("100000.5"), "qty": D("0.0009"),
            "sl": D("99000"), "tp1": D("101000"), "tp2": D("102000"), "r": D("1000"), "signal_price": D(100000),
            "signal_ts": 0.0, "created_at": 0.0, "entry_client_id": "x", "filled_qty": D("0.0009"),
            "filled_quote": D("90.00045"), "avg_entry": D("100000.5"), "entry_fee_base": D("0.0000009")}
    base.update(kw)
    return Position(**base)


def _order(cid: str, status: str, executed: str = "0", quote: str = "0", type_: str = "LIMIT_MAKER",
           working: bool = True) -> Order:
    return Order(symbol="BTCUSDC", order_id=1, client_order_id=cid, status=status, executed_qty=D(executed),
                 cummulative_quote_qty=D(quote), type=type_, is_working=working, price=D(1))


def test_plan_legs_cover_what_is_held_in_whole_steps():
    pos = _pos()
    legs = plan_legs(pos, F, 2)
    assert [lg.name for lg in legs] == ["tp1", "tp2", "trail"]
    assert sum(lg.qty for lg in legs) == D("0.00089")
    assert D(0) <= dust(msgspec.structs.replace(pos, legs=legs)) < F.step_size
    assert all(lg.stop_price == pos.sl and lg.stop_limit == pos.sl - D("0.02") for lg in legs)
    assert legs[0].list_client_id.endswith("-o1-0") and legs[2].stop_client_id.endswith("-tr-0")


def test_leg_ids_are_deterministic_and_valid():
    a, b = leg_ids("250118-2009-L-f6228d", "tp2", 3), leg_ids("250118-2009-L-f6228d", "tp2", 3)
    assert a == b and a.stop_id.endswith("-s2-3") and a.tp_id.endswith("-p2-3") and a.list_id.endswith("-o2-3")
    assert leg_ids("250118-2009-L-f6228d", "trail", 0).list_id == ""


def test_read_attempt_tp_fill_stop_fill_and_open():
    leg = Leg(name="tp1", qty=D("0.0003"), stop_price=D(1), stop_limit=D(1), tp_client_id="t", stop_client_id="s")
    tp = read_attempt(leg, {"t": _order("t", "FILLED", "0.0003", "30.3"), "s": _order("s", "EXPIRED")})
    assert (tp.open, tp.qty, tp.reason) == (False, D("0.0003"), "tp")
    sl = read_attempt(leg, {"t": _order("t", "EXPIRED"), "s": _order("s", "FILLED", "0.0003", "29.7", "STOP_LOSS_LIMIT")})
    assert (sl.open, sl.reason, sl.quote) == (False, "stop", D("29.7"))
    resting = read_attempt(leg, {"t": _order("t", "NEW"), "s": _order("s", "NEW", type_="STOP_LOSS_LIMIT", working=False)})
    assert resting.open and resting.triggered_stop is None
    gapped = read_attempt(leg, {"t": _order("t", "EXPIRED"), "s": _order("s", "NEW", type_="STOP_LOSS_LIMIT")})
    assert gapped.open and gapped.triggered_stop is not None


def test_oco_stop_lost_after_a_partial_take_profit():
    leg = Leg(name="tp1", qty=D("0.0003"), stop_price=D(1), stop_limit=D(1), tp_client_id="t", stop_client_id="s")
    partial = {"t": _order("t", "PARTIALLY_FILLED", "0.00015", "15"), "s": _order("s", "EXPIRED")}
    assert oco_stop_lost(leg, partial)
    assert not oco_stop_lost(leg, {"t": _order("t", "NEW"), "s": _order("s", "NEW")})
    assert not oco_stop_lost(leg, {"t": _order("t", "FILLED", "0.0003"), "s": _order("s", "EXPIRED")})
    trail = Leg(name="trail", qty=D("0.0003"), stop_price=D(1), stop_limit=D(1), stop_client_id="s")
    assert not oco_stop_lost(trail, {"s": _order("s", "EXPIRED")})


def test_immediate_reason_long_and_short():
    leg = Leg(name="tp1", qty=D(1), tp_price=D(110), stop_price=D(90), stop_limit=D(89))
    assert immediate_reason("long", leg, D(100)) == ""
    assert immediate_reason("long", leg, D(90)) == "stop_immediate"
    assert immediate_reason("long", leg, D(110)) == "tp_immediate"
    short = Leg(name="tp1", qty=D(1), tp_price=D(90), stop_price=D(110), stop_limit=D(111))
    assert immediate_reason("short", short, D(100)) == ""
    assert immediate_reason("short", short, D(111)) == "stop_immediate"
    assert immediate_reason("short", short, D(89)) == "tp_immediate"


def test_share_out_books_what_each_leg_has_left():
    legs = [Leg(name="trail", qty=D("0.0003"), stop_price=D(1), stop_limit=D(1)),
            Leg(name="tp2", qty=D("0.0003"), stop_price=D(1), stop_limit=D(1), filled_qty=D("0.0001"))]
    out = share_out(legs, D("0.0004"), D(40))
    assert out == {"trail": (D("0.0003"), D(30)), "tp2": (D("0.0001"), D(10))}
    assert share_out(legs, D(0), D(0)) == {}


def test_break_even_is_the_average_entry_to_the_nearest_tick():
    # §9: the original prints entry_actual to the tick (nearest), for both sides; a tie goes up here.
    assert be_price(_pos(avg_entry=D("100000.505")), D("0.01")) == D("100000.51")
    assert be_price(_pos(side="short", avg_entry=D("100000.505")), D("0.01")) == D("100000.51")
    assert be_price(_pos(avg_entry=D("94985.4049")), D("0.01")) == D("94985.40")
    assert be_price(_pos(side="short", avg_entry=D("94985.4051")), D("0.01")) == D("94985.41")


def _bars(lows: list[int]) -> list[Bar]:
    return [Bar(ts=60 * i, trades=1, total_qty=D(1), buy_qty=D(1), sell_qty=D(0), avg_price=D(x + 5),
                close=D(x + 5), high=D(x + 10), low=D(x)) for i, x in enumerate(lows)]


def test_trail_candidate_and_move():
    bars = _bars([100, 95, 90, 95, 100, 105])
    cand = trail_candidate("long", bars, 2, D(15), D("0.01"))
    assert cand == D(75)
    kw = {"step_usd": D(20), "last_close": D(110), "confirm_buffer": D(0), "market": D(110)}
    assert trail_move("long", D(50), cand, **kw) == D(75)
    assert trail_move("long", D(60), cand, **kw) is None          # less than TRAIL_STEP_USD
    assert trail_move("long", D(80), cand, **kw) is None          # would loosen the stop
    assert trail_move("long", D(50), cand, **{**kw, "market": D(75)}) is None  # at the market


@given(st.sampled_from(["long", "short"]), st.integers(1, 10_000), st.integers(1, 10_000), st.integers(0, 50),
       st.integers(1, 10_000))
def test_trail_never_moves_against_the_position(side, current, candidate, step, market):
    new = trail_move(side, D(current), D(candidate), step_usd=D(step), last_close=D(market),
                     confirm_buffer=D(0), market=D(market))
    assert new is None or better(side, new, D(current))


def test_close_summary_counts_every_leg_and_flatten():
    legs = [Leg(name="tp1", qty=D("0.0003"), stop_price=D(1), stop_limit=D(1), filled_qty=D("0.0003"),
                filled_quote=D("30.3"), exit_reason="tp"),
            Leg(name="trail", qty=D("0.0006"), stop_price=D(1), stop_limit=D(1), filled_qty=D("0.0002"),
                filled_quote=D("20"), exit_reason="stop")]
    pos = _pos(legs=legs, flatten_qty=D("0.0004"), flatten_quote=D("39.6"), avg_entry=D(100000))
    c = close_summary(pos, 10.0)
    assert c.qty == D("0.0009") and c.avg_exit == (D("89.9") / D("0.0009")).quantize(D("0.0001"))
    assert c.pnl_quote == D("89.9") - D(90) and c.exit_reason == "stop"
    assert remaining(legs[1]) == D("0.0004")


def test_short_exit_qty_covers_the_base_commission():
    step = D("0.00001")
    assert short_exit_qty(D("0.00167"), D("0.001"), step) == D("0.00168")  # 0.00167 / 0.999 = 0.0016716..
    assert short_exit_qty(D("0.999"), D("0.001"), step) == D("1.00000")    # exact: no extra step
    assert short_exit_qty(D("0.00167"), D(0), step) == D("0.00167")
    assert short_exit_qty(D(0), D("0.001"), step) == 0


@given(held=st.integers(1, 10**7), fee_bp=st.integers(0, 100))
def test_short_exit_qty_received_after_commission_repays_what_is_held(held, fee_bp):
    step, rate = D("0.00001"), D(fee_bp) / 10000
    qty = short_exit_qty(held * step, rate, step)
    assert qty % step == 0
    assert qty * (1 - rate) >= held * step          # what is received covers what must be given back
    assert (qty - step) * (1 - rate) < held * step  # and not one step more than needed


def test_short_legs_add_up_to_the_grossed_up_total_long_unchanged():
    short = _pos(side="short", sl=D("101000"), tp1=D("99000"), tp2=D("98000"), entry_fee_base=D(0),
                 filled_qty=D("0.0009"))
    total = exit_total(short, D("0.001"), F.step_size)
    assert total == D("0.00091")
    assert sum(lg.qty for lg in plan_legs(short, F, 2, D("0.001"))) == total
    long = _pos()
    assert exit_total(long, D("0.001"), F.step_size) == long.filled_qty - long.entry_fee_base
    assert sum(lg.qty for lg in plan_legs(long, F, 2, D("0.001"))) == D("0.00089")


def test_nearest_stop_is_one_tick_on_the_losing_side():
    tick = D("0.01")
    assert nearest_stop("long", D("98999.99"), tick) == D("98999.98")
    assert nearest_stop("short", D("101000.01"), tick) == D("101000.02")
    leg = Leg(name="trail", qty=D(1), stop_price=nearest_stop("long", D(99000), tick), stop_limit=D(1))
    assert immediate_reason("long", leg, D(99000)) == ""  # it would rest
    leg = Leg(name="trail", qty=D(1), stop_price=nearest_stop("short", D(99000), tick), stop_limit=D(1))
    assert immediate_reason("short", leg, D(99000)) == ""


def test_failsafe_needs_both_the_tries_and_the_grace():
    kw = {"max_tries": 3, "grace_sec": 60}
    assert not failsafe_due(tries=2, first_error_at=100, now=1000, **kw)   # not enough tries
    assert not failsafe_due(tries=5, first_error_at=100, now=159, **kw)    # too soon after the first refusal
    assert failsafe_due(tries=3, first_error_at=100, now=160, **kw)
    assert not failsafe_due(tries=3, first_error_at=0, now=160, **kw)      # no refusal recorded
    assert failsafe_due(tries=3, first_error_at=100, now=100, max_tries=3, grace_sec=0)


def test_exit_fee_rate_picks_the_larger_of_maker_and_taker_or_the_fallback():
    from shared.adapters.fee_rate import pick_fee_rate

    assert pick_fee_rate({"maker": D("0.00075"), "taker": D("0.001")}, D("0.002")) == (D("0.001"), "account")
    assert pick_fee_rate({}, D("0.002")) == (D("0.002"), "fallback")
    assert pick_fee_rate({"maker": D("1.5")}, D("0.002")) == (D("0.002"), "fallback")


def test_exit_fee_rate_from_the_paper_exchange_account_or_the_fallback(pe):  # noqa: F811
    from shared.adapters.fee_rate import exit_fee_rate
    from shared.adapters.binance_rest import BinanceClient
    from tests.redis_helpers import free_port

    assert exit_fee_rate(pe.client(), D("0.002")) == (D("0.001"), "account")
    down = BinanceClient(f"http://127.0.0.1:{free_port()}", "k", "s", timeout=1)  # nothing listens there
    assert exit_fee_rate(down, D("0.002")) == (D("0.002"), "fallback")


def test_an_attempt_is_counted_once_and_a_spent_leg_is_done():
    leg = Leg(name="tp1", qty=D("0.0003"), tp_price=D(101000), stop_price=D(99000), stop_limit=D(98990),
              status="PLACED")
    half = LegFills(qty=D("0.0001"), quote=D("10.1"), reason="tp", open=False)
    assert count_attempt(leg, 0, half, F) and leg.filled_qty == D("0.0001") and leg.status == "PLACED"
    assert not count_attempt(leg, 0, half, F) and leg.filled_qty == D("0.0001")   # re-delivered: not twice
    rest = LegFills(qty=D("0.00015"), quote=D("15.15"), reason="tp", open=False)   # 0.00005 left: < 5 USDC
    assert count_attempt(leg, 1, rest, F) and leg.status == "DONE" and leg.exit_reason == "tp"
