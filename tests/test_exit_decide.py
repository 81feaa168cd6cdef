"""The exit side's pure decisions (shared/domain/exit_decide.py) and the named transitions
(shared/domain/transitions.py): table tests of each path of the position's life, and properties. No Redis, no HTTP."""
from __future__ import annotations

from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.config import load_config
from shared.domain import transitions as tr
from shared.domain.exit_decide import (
    Close,
    EvaluateTrail,
    ExitView,
    FinishMove,
    Flatten,
    MoveStop,
    PlaceLeg,
    PlanLegs,
    RequestFlatten,
    SettleBreakEven,
    StartTrailing,
    break_even,
    decide,
    refused_retry_sec,
    stop_lost_refused,
    waits_for_market,
)
from shared.domain.exit_rules import LegFills, be_price, better, plan_legs
from shared.domain.position import LegStatus, Phase, Position, State, decode_state, encode_state
from shared.domain.symbol import SymbolFilters

T = D("0.01")
CFG = load_config({"SYMBOL": "BTCUSDC"})
F = SymbolFilters(symbol="BTCUSDC", base_asset="BTC", quote_asset="USDC", tick_size=T, step_size=D("0.00001"),
                  min_qty=D("0.00001"), max_qty=D(9000), min_notional=D("5"))


def _pos(side: str = "long", **kw) -> Position:
    sl, tp1, tp2 = (D(94000), D(96000), D(97000)) if side == "long" else (D(96000), D(94000), D(93000))
    base = dict(trade_key="t1", signal_key="k", symbol="BTCUSDC", side=side, status=Phase.OPEN_FILLED,
                entry_mode="LIMIT", entry_price=D(95000), qty=D("0.003"), sl=sl, tp1=tp1, tp2=tp2, r=D(1000),
                signal_price=D(95000), signal_ts=0.0, created_at=0.0, entry_client_id="t1-en-0",
                filled_qty=D("0.003"), filled_quote=D("285.007634871"), avg_entry=D("95002.5450"),
                avg_fill=D("95002.544957"))
    base.update(kw)
    return Position(**base)


def _legged(side: str = "long", statuses=("PLACED", "PLACED", "PLACED"), reasons=("", "", ""), **kw) -> Position:
    p = _pos(side, **kw)
    p.legs = plan_legs(p, F, 2)
    for leg, s, why in zip(p.legs, statuses, reasons):
        leg.status, leg.exit_reason = LegStatus(s), why
    return p


# ---- table: every path of the exit phase ---------------------------------------------------------------------

def test_a_new_position_plans_its_legs_then_places_each():
    p = _pos()
    assert decide(p, ExitView(), CFG, T, 0) == [PlanLegs()]
    p = _legged(statuses=("NEW", "NEW", "NEW"))
    assert decide(p, ExitView(), CFG, T, 0) == [PlaceLeg("tp1"), PlaceLeg("tp2"), PlaceLeg("trail")]


def test_a_refused_leg_waits_its_retry_the_others_do_not():
    p = _legged(statuses=("NEW", "NEW", "PLACED"), exits_next_at=100.0)
    p.legs[0].errors = 1
    assert decide(p, ExitView(), CFG, T, 50) == [PlaceLeg("tp2")]
    assert decide(p, ExitView(), CFG, T, 100) == [PlaceLeg("tp1"), PlaceLeg("tp2")]


def test_a_stop_move_under_way_is_finished_after_a_restart():
    p = _legged(statuses=("PLACED", "REPLACING", "PLACED"))
    assert decide(p, ExitView(), CFG, T, 0) == [FinishMove("tp2")]


def test_tp1_moves_every_resting_stop_to_break_even_rounded_once_from_the_exact_average():
    p = _legged(statuses=("DONE", "PLACED", "PLACED"), reasons=("tp", "", ""))
    be = be_price(p, T)
    assert be == D("95002.54")   # 95002.544957 -> 95002.54 (rounded twice it was 95002.5450 -> 95002.55)
    acts = decide(p, ExitView(executable=D(95500)), CFG, T, 0)
    assert acts == [MoveStop("tp2", be, "break_even"), MoveStop("trail", be, "break_even"), SettleBreakEven(be)]


def test_break_even_past_the_market_flattens_and_an_unknown_market_waits():
    p = _legged(statuses=("DONE", "PLACED", "PLACED"), reasons=("tp", "", ""))
    assert break_even(p, ExitView(executable=D(95000)), T, 0) == [RequestFlatten("be_immediate")]
    assert break_even(p, ExitView(executable=None), T, 0) == []


def test_break_even_short_and_its_cooldown_and_once_done():
    p = _legged("short", statuses=("DONE", "PLACED", "PLACED"), reasons=("tp", "", ""))
    be = be_price(p, T)
    assert break_even(p, ExitView(executable=D(94000)), T, 0)[-1] == SettleBreakEven(be)
    p.be_next_at = 10.0
    assert break_even(p, ExitView(executable=D(94000)), T, 5) == []
    p.be_done = True
    assert break_even(p, ExitView(executable=D(94000)), T, 50) == []


def test_a_stop_loss_on_tp1_arms_no_break_even():
    p = _legged(statuses=("DONE", "PLACED", "PLACED"), reasons=("stop", "", ""))
    assert [a for a in decide(p, ExitView(executable=D(95500)), CFG, T, 0) if isinstance(a, MoveStop)] == []


def test_tp2_starts_the_trailing_and_it_is_evaluated_on_its_cadence():
    p = _legged(statuses=("DONE", "DONE", "PLACED"), reasons=("tp", "tp", ""), be_done=True)
    assert decide(p, ExitView(), CFG, T, 1000) == [StartTrailing(), EvaluateTrail(activation=True)]
    p.trailing, p.trail_last_at = True, 1000.0
    assert decide(p, ExitView(), CFG, T, 1000 + CFG.TRAIL_UPDATE_EVERY_SEC - 1) == []
    assert decide(p, ExitView(), CFG, T, 1000 + CFG.TRAIL_UPDATE_EVERY_SEC) == [EvaluateTrail(activation=False)]


def test_flatten_and_manual_close_and_close():
    p = _legged(flatten_requested="operator", status=Phase.CLOSING)
    assert decide(p, ExitView(), CFG, T, 0) == [Flatten("operator")]
    assert decide(p, ExitView(flatten_wait=True), CFG, T, 0) == []
    p = _legged()
    tr.manual_close_booked(p, D("0.003"), D("285"), F)       # every coin left the account by hand
    assert p.close_reason == "manual" and decide(p, ExitView(), CFG, T, 0) == [Close()]


def test_restart_in_every_phase_decides_from_the_document_alone():
    cases = {("NEW", "NEW", "NEW"): [PlaceLeg("tp1"), PlaceLeg("tp2"), PlaceLeg("trail")],
             ("PLACED", "REPLACING", "NEW"): [FinishMove("tp2"), PlaceLeg("trail")],
             ("PLACED", "PLACED", "PLACED"): [],
             ("DONE", "DONE", "DONE"): [Close()]}
    for statuses, want in cases.items():
        p = decode_state(encode_state(State(position=_legged(statuses=statuses)))).position
        assert p is not None and p.legs[0].status == LegStatus(statuses[0])
        assert decide(p, ExitView(), CFG, T, 0) == want, statuses


def test_an_expired_leg_goes_back_to_new_and_is_placed_again():
    p = _legged()
    tr.leg_filled(p, p.legs[2], 0, LegFills(open=False, qty=D(0), quote=D(0), reason=""), F)
    assert p.legs[2].status == LegStatus.NEW and p.legs[2].attempt == 1
    assert decide(p, ExitView(), CFG, T, 0) == [PlaceLeg("trail")]


def test_a_leg_whose_stop_expired_and_whose_replacement_is_refused_is_flattened_in_time():
    # (lost at, refusals incl. this one, now, SL_WATCHDOG_RETRY_SEC, FAILSAFE_EXITS_MAX_TRIES) -> flatten?
    table = [((0.0, 3, 500.0, 5, 5), False),      # never lost its stop: the ordinary retry / failsafe path
             ((100.0, 0, 500.0, 5, 5), False),    # lost, not refused yet: placed again first
             ((100.0, 1, 100.0, 5, 5), False),    # refused at once: one more try after SL_WATCHDOG_RETRY_SEC
             ((100.0, 1, 104.9, 5, 5), False),
             ((100.0, 2, 105.0, 5, 5), True),     # still refused once the retry window is over: flatten
             ((100.0, 1, 160.0, 5, 5), True),     # a first refusal that came late: flatten
             ((100.0, 3, 101.0, 5, 3), True),     # refused FAILSAFE_EXITS_MAX_TRIES times: flatten at once
             ((100.0, 2, 101.0, 60, 3), False)]
    for args, want in table:
        assert stop_lost_refused(*args) is want, args
    assert refused_retry_sec(100.0, 15, 5) == 5 and refused_retry_sec(0.0, 15, 5) == 15


def test_a_lost_stop_is_recorded_counted_and_cleared_when_a_stop_rests_again():
    p = _legged()
    trail = p.legs[2]
    tr.stop_lost(p, trail, 100.0)                      # still PLACED: nothing lost
    assert trail.stop_lost_at == 0
    tr.leg_filled(p, trail, 0, LegFills(open=False, qty=D(0), quote=D(0), reason=""), F)
    tr.stop_lost(p, trail, 100.0)
    tr.stop_lost(p, trail, 103.0)                      # the first loss counts
    assert trail.stop_lost_at == 100.0
    tr.leg_rejected(p, trail, 101.0, refused_retry_sec(trail.stop_lost_at, 15, 5))
    assert trail.stop_lost_refusals == 1 and p.exits_next_at == 106.0
    assert decide(p, ExitView(), CFG, T, 105) == [] and decide(p, ExitView(), CFG, T, 106) == [PlaceLeg("trail")]
    tr.leg_rejected(p, trail, 106.0, 5)
    assert stop_lost_refused(trail.stop_lost_at, trail.stop_lost_refusals, 106.0, 5, 5)
    tr.leg_placed(p, trail, 107.0)
    assert trail.stop_lost_at == 0 and trail.stop_lost_refusals == 0


# ---- transitions -----------------------------------------------------------------------------------------------

def test_entry_transitions_walk_the_phases():
    p = _pos(status=Phase.PENDING, filled_qty=D(0), filled_quote=D(0), avg_entry=D(0), avg_fill=D(0))
    tr.entry_acknowledged(p, 7)
    assert p.status == Phase.OPEN and p.entry_order_id == 7
    assert tr.entry_fill_counted(p, "t1-en-0", D("0.003"), D("285.007634871"), D(0))
    assert not tr.entry_fill_counted(p, "t1-en-0", D("0.003"), D("285.007634871"), D(0))   # once per attempt
    tr.entry_filled(p, 5.0, T)
    assert p.status == Phase.OPEN_FILLED and p.avg_entry == D("95002.5450") and p.avg_fill == D("95002.544957")
    tr.flatten_requested(p, "operator")
    tr.flatten_requested(p, "failsafe")
    assert p.status == Phase.CLOSING and p.flatten_requested == "operator"


def test_on_position_skips_another_trade_or_phase():
    st = State(position=_pos())
    applied = tr.Applied()
    assert tr.on_position(st, "other", (Phase.OPEN_FILLED,), applied, tr.break_even_done) is None
    assert tr.on_position(st, "t1", (Phase.PENDING,), applied, tr.break_even_done) is None
    assert tr.on_position(st, "t1", (Phase.OPEN_FILLED,), applied, tr.break_even_done) is not None
    assert st.position.be_done


def test_a_stop_move_is_recorded_with_new_ids_and_only_in_favour():
    p = _legged()
    ids = tr.on_leg(p, "trail", tr.stop_moved, D(94500), D("94499.98"), 1.0)
    assert ids is not None and p.legs[2].status == LegStatus.REPLACING and p.legs[2].stop_client_id == ids.stop_id
    p.legs[2].status = LegStatus.PLACED
    assert tr.on_leg(p, "trail", tr.stop_moved, D(94400), D("94399.98"), 2.0) is None   # looser: refused


# ---- properties ----------------------------------------------------------------------------------------------

prices = st.decimals(min_value=D(90000), max_value=D(100000), places=2)


@settings(max_examples=200, deadline=None)
@given(side=st.sampled_from(["long", "short"]), avg=st.decimals(min_value=D(94500), max_value=D(95500), places=6),
       market=prices, tp1_done=st.booleans(), tp2_done=st.booleans())
def test_a_stop_never_loosens(side, avg, market, tp1_done, tp2_done):
    p = _legged(side, statuses=("DONE" if tp1_done else "PLACED", "DONE" if tp2_done else "PLACED", "PLACED"),
                reasons=("tp" if tp1_done else "", "tp" if tp2_done else "", ""), avg_fill=avg)
    for a in decide(p, ExitView(executable=market), CFG, T, 0):
        if isinstance(a, MoveStop):
            leg = next(lg for lg in p.legs if lg.name == a.leg)
            assert better(side, a.stop, leg.stop_price)
            assert tr.on_leg(p, a.leg, tr.stop_moved, a.stop, a.stop, 0.0) is not None


@settings(max_examples=200, deadline=None)
@given(side=st.sampled_from(["long", "short"]), fills=st.lists(st.integers(min_value=0, max_value=100), min_size=3,
                                                                max_size=3), booked=st.integers(0, 300))
def test_the_stops_cover_what_is_held_and_nothing_sells_more(side, fills, booked):
    p = _legged(side)
    for leg, pct in zip(p.legs, fills):
        qty = (leg.qty * pct / 100).quantize(F.step_size)
        tr.leg_filled(p, leg, 0, LegFills(open=False, qty=qty, quote=qty * 95000, reason="tp" if qty else ""), F)
    tr.manual_close_booked(p, D(booked) * F.step_size, D(booked), F)
    held = p.filled_qty - sum((lg.filled_qty for lg in p.legs), D(0))
    open_qty = sum((lg.qty - lg.filled_qty for lg in p.legs if lg.status != LegStatus.DONE), D(0))
    assert all(lg.filled_qty <= lg.qty for lg in p.legs)          # no leg sells more than it holds
    assert open_qty <= held                                       # nothing left to sell beyond what is held
    spent = [lg for lg in p.legs if lg.status == LegStatus.DONE]
    assert held - open_qty <= sum((lg.qty - lg.filled_qty for lg in spent), D(0)) + (p.filled_qty - sum(
        (lg.qty for lg in p.legs), D(0)))                         # what no stop covers is only spent legs' dust


def test_entry_filled_hands_the_position_over_in_its_event():
    from shared.adapters.redis_streams import decode_fields, encode_fields
    from shared.domain.messages import handed_over_position
    st = State(position=_pos(status=Phase.OPEN, avg_entry=D(0), avg_fill=D(0)))
    out = tr.handed_over(st, "t1", (Phase.PENDING, Phase.OPEN), 7.0, T, "exec:positions")
    assert out is not None
    (stream, msg), = out[1]
    fields = {k.encode(): v for k, v in encode_fields(msg).items()}
    got = handed_over_position(decode_fields(fields))
    assert stream == "exec:positions" and got == st.position and got.status == Phase.OPEN_FILLED
    assert got.avg_fill == D("285.007634871") / D("0.003") and got.avg_entry == D("95002.5450")
    assert tr.handed_over(st, "t1", (Phase.PENDING, Phase.OPEN), 8.0, T, "exec:positions") is None  # once


# ---- the watches (shared/domain/exit_watch.py): gaps, manual close, flatten, refusals, the trailing target --------

from shared.domain.bars import Bar  # noqa: E402
from shared.domain.exit_rules import held_qty  # noqa: E402
from shared.domain.exit_watch import (  # noqa: E402
    BookManual,
    CountRejection,
    FlattenDust,
    GapUnexplained,
    GraceReset,
    GraceStarted,
    MarketClose,
    ReadAccount,
    ReadBook,
    ReadForeignFills,
    ReadUncounted,
    ReadWallet,
    RecheckStop,
    SetWalletBaseline,
    StopFilling,
    StopGapped,
    StopNearest,
    StopResting,
    TrailEval,
    TrailFeedStale,
    leg_refused,
    manual_close,
    market_close,
    nearest_move,
    refusal_reason,
    stop_gap,
    trail_target,
)
from shared.domain.orders import Order  # noqa: E402
import msgspec  # noqa: E402

FEE = D("0.001")


def msgspec_replace(v: ExitView, **kw) -> ExitView:
    return msgspec.structs.replace(v, **kw)


def _stop(limit: D, working: bool = True, type_: str = "STOP_LOSS_LIMIT") -> Order:
    return Order(symbol="BTCUSDC", order_id=1, client_order_id="t1-s1-0", price=limit, status="NEW",
                 type=type_, is_working=working)


def test_a_gap_starts_the_grace_then_flattens_once_it_is_over():
    stop, past, back = _stop(D(93990)), ExitView(executable=D(93900)), ExitView(executable=D(94100))
    assert stop_gap("long", stop, past, None, 100.0, 5.0, fresh=True) == [GraceStarted(100.0)]
    assert stop_gap("long", stop, past, 100.0, 104.0, 5.0, fresh=True) == []
    assert stop_gap("long", stop, past, 100.0, 105.0, 5.0, fresh=True) == [StopGapped(5.0)]
    assert stop_gap("long", stop, back, 100.0, 105.0, 5.0, fresh=True) == [GraceReset()]
    assert stop_gap("long", stop, ExitView(), 100.0, 105.0, 5.0, fresh=True) == [GraceReset()]   # market unknown
    assert stop_gap("long", stop, past, None, 100.0, 0.0, fresh=True) == [GraceStarted(100.0), StopGapped(0.0)]


def test_a_gap_from_a_stream_record_is_asked_again_and_a_stop_that_fills_is_no_gap():
    stop, past = _stop(D(93990)), ExitView(executable=D(93900))
    assert stop_gap("long", stop, past, 100.0, 106.0, 5.0, fresh=False) == [RecheckStop()]
    again = ExitView(executable=D(93900), stop_resting=False)
    assert stop_gap("long", stop, again, 100.0, 106.0, 5.0, fresh=False) == [StopFilling()]
    again = ExitView(executable=D(93900), stop_resting=True)
    assert stop_gap("long", stop, again, 100.0, 106.0, 5.0, fresh=False) == [StopGapped(6.0)]


def test_a_gap_short_side_and_orders_that_are_no_triggered_stop():
    stop = _stop(D(96010))
    assert stop_gap("short", stop, ExitView(executable=D(96100)), 0.0, 10.0, 5.0, fresh=True) == [StopGapped(10.0)]
    assert stop_gap("short", stop, ExitView(executable=D(95900)), 0.0, 10.0, 5.0, fresh=True) == [GraceReset()]
    assert stop_gap("long", _stop(D(93990), working=False), ExitView(executable=D(1)), 0.0, 9.0, 5.0, True) == []
    assert stop_gap("long", _stop(D(93990), type_="LIMIT_MAKER"), ExitView(executable=D(1)), 0.0, 9.0, 5.0, True) == []


def test_manual_close_margin_reads_in_order_sets_the_baseline_then_books_what_trades_prove():
    p = _legged()
    m = dict(fee_rate=FEE, f=F, margin=True)
    assert manual_close(p, ExitView(), **m) == [ReadWallet()]
    assert manual_close(p, ExitView(wallet_net=D("0.003")), **m) == [SetWalletBaseline(D("0.003"), D("0.003"))]
    p.wallet_base0 = D("0.003")
    assert manual_close(p, ExitView(wallet_net=D("0.003")), **m) == []                    # nothing moved
    v = ExitView(wallet_net=D("0.001"))                                                   # 0.002 left by hand
    assert manual_close(p, v, **m) == [ReadUncounted()]
    assert manual_close(p, msgspec_replace(v, uncounted=D("0.002")), **m) == []           # our own fills
    v = msgspec_replace(v, uncounted=D(0))
    assert manual_close(p, v, **m) == [ReadForeignFills(D("0.002"))]
    assert manual_close(p, msgspec_replace(v, foreign_qty=D(0), foreign_quote=D(0)), **m) == [GapUnexplained(D("0.002"))]
    v = msgspec_replace(v, foreign_qty=D("0.002"), foreign_quote=D("190"))
    assert manual_close(p, v, **m) == [StopResting()]
    v = msgspec_replace(v, resting_stopped=True)                                          # measured again
    assert manual_close(p, v, **m) == [BookManual(D("0.002"), D("0.002"), D("190"))]
    assert manual_close(p, msgspec_replace(v, wallet_net=None), **m) == []               # unreadable: no booking


def test_manual_close_margin_short_counts_the_commission_of_a_buy_back():
    p = _legged("short", wallet_base0=D("-0.003"))
    v = ExitView(wallet_net=D(0), uncounted=D(0))                                         # all bought back by hand
    traded = D("0.003") / (1 - FEE)
    assert manual_close(p, v, FEE, F, True) == [ReadForeignFills(traded)]
    v = msgspec_replace(v, foreign_qty=D("0.003"), foreign_quote=D("285"), resting_stopped=True)
    assert manual_close(p, v, FEE, F, True) == [BookManual(D("0.003"), D("0.003"), D("285"))]


def test_manual_close_spot_after_2010_books_the_coins_gone_or_nothing():
    p = _legged()
    held = held_qty(p, FEE, F.step_size)
    assert manual_close(p, ExitView(), FEE, F, False) == [ReadAccount()]
    assert manual_close(p, ExitView(account_base=held), FEE, F, False) == [ReadUncounted()]
    assert manual_close(p, ExitView(account_base=held, uncounted=D(0)), FEE, F, False) == []   # all still there
    v = ExitView(account_base=D(0), uncounted=D(0))
    assert manual_close(p, v, FEE, F, False) == [ReadForeignFills(held)]
    assert manual_close(p, msgspec_replace(v, foreign_qty=D(0), foreign_quote=D(0)), FEE, F, False) == [
        GapUnexplained(held)]
    v = msgspec_replace(v, foreign_qty=held, foreign_quote=D("285"))
    assert manual_close(p, v, FEE, F, False) == [BookManual(held, held, D("285"))]
    assert manual_close(_legged("short"), v, FEE, F, False) == []                          # no spot short


def test_flatten_sells_what_is_held_in_whole_steps_and_leaves_dust():
    p = _legged()
    assert market_close(p, FEE, F) == MarketClose(held_qty(p, FEE, F.step_size))
    for lg in p.legs:
        lg.filled_qty = lg.qty
    assert isinstance(market_close(p, FEE, F), FlattenDust)


def test_a_refused_leg_flattens_goes_to_the_nearest_stop_or_is_counted():
    p = _legged()
    trail = p.legs[2]
    assert refusal_reason("long", trail, ExitView(executable=trail.stop_price - 1), "x") == "stop_immediate"
    assert refusal_reason("long", trail, ExitView(), "Stop price would trigger immediately.") == "stop_immediate"
    assert refusal_reason("long", trail, ExitView(), "Order would immediately match and take.") == "tp_immediate"
    assert refusal_reason("long", trail, ExitView(executable=D(95000)), "Account has insufficient balance") == ""
    near = nearest_move("long", trail, ExitView(executable=D(93000)), T, 2)
    assert near == StopNearest(D("92999.99"), D("92999.97"))
    assert nearest_move("long", trail, ExitView(), T, 2) is None
    assert leg_refused("stop_immediate", near, "nearest") == near
    assert leg_refused("stop_immediate", None, "nearest") == RequestFlatten("stop_immediate")
    assert leg_refused("stop_immediate", near, "flatten") == RequestFlatten("stop_immediate")
    assert leg_refused("tp_immediate", None, "nearest") == RequestFlatten("tp_immediate")
    assert leg_refused("", None, "nearest") == CountRejection()


def _bars(lows: list[int], ts0: int = 0, close: int = 96000) -> tuple[Bar, ...]:
    return tuple(Bar(ts=ts0 + 60 * i, trades=1, total_qty=D(1), buy_qty=D(1), sell_qty=D(0), avg_price=D(lw),
                     close=D(close), high=D(lw + 10), low=D(lw)) for i, lw in enumerate(lows))


def test_the_trailing_target_fails_closed_on_a_stale_feed_and_reads_the_book_last():
    p = _legged(statuses=("DONE", "DONE", "PLACED"), reasons=("tp", "tp", ""), be_done=True)
    trail = p.legs[2]
    bars = _bars([95900, 95800, 95500, 95800, 95900])
    now = bars[-1].ts + 60
    assert trail_target(p, trail, ExitView(), CFG, T, now, False) == [TrailFeedStale(None)]
    late = now + CFG.INVAR_FEED_STALE_SEC + 1
    assert trail_target(p, trail, ExitView(bars=bars), CFG, T, late, False) == [TrailFeedStale(bars[-1].ts)]
    assert trail_target(p, trail, ExitView(bars=bars), CFG, T, now, False) == [ReadBook()]
    got = trail_target(p, trail, ExitView(bars=bars, book=(D(96000), D("96000.02"))), CFG, T, now, False)
    want = D(95500) - CFG.TRAIL_SWING_BUFFER_USD
    assert got == [TrailEval(want, "swing", D(96000), want)]


def test_the_trailing_target_falls_back_to_the_mid_at_activation_only():
    p = _legged(statuses=("DONE", "DONE", "PLACED"), reasons=("tp", "tp", ""), be_done=True)
    trail = p.legs[2]
    bars = _bars([95000, 95000, 95000])                                       # no swing
    v = ExitView(bars=bars, book=(D(96000), D(96002)))
    mid = D(96001) - CFG.TRAIL_SWING_BUFFER_USD
    assert trail_target(p, trail, v, CFG, T, bars[-1].ts + 60, True) == [TrailEval(mid, "mid", D(96000), mid)]
    assert trail_target(p, trail, v, CFG, T, bars[-1].ts + 60, False) == [TrailEval(None, "swing", D(96000), None)]


def test_restart_in_every_phase_with_a_flatten_requested_or_break_even_pending():
    p = decode_state(encode_state(State(position=_legged(flatten_requested="stop_gapped", status=Phase.CLOSING)))).position
    assert decide(p, ExitView(), CFG, T, 0) == [Flatten("stop_gapped")]
    p = decode_state(encode_state(State(position=_legged(statuses=("DONE", "PLACED", "PLACED"),
                                                          reasons=("tp", "", ""))))).position
    acts = decide(p, ExitView(executable=D(95500)), CFG, T, 0)
    assert [type(a) for a in acts] == [MoveStop, MoveStop, SettleBreakEven]
    p = decode_state(encode_state(State(position=_pos()))).position
    assert decide(p, ExitView(), CFG, T, 0) == [PlanLegs()]


# ---- properties of the watches ------------------------------------------------------------------------------------

@settings(max_examples=200, deadline=None)
@given(side=st.sampled_from(["long", "short"]), lows=st.lists(st.integers(90000, 100000), min_size=1, max_size=12),
       bid=st.integers(90000, 100000), activation=st.booleans(), stop=st.integers(90000, 100000))
def test_the_trailing_target_never_loosens_the_stop_nor_crosses_the_market(side, lows, bid, activation, stop):
    p = _legged(side, statuses=("DONE", "DONE", "PLACED"), reasons=("tp", "tp", ""), be_done=True)
    trail = p.legs[2]
    trail.stop_price = D(stop)
    bars = _bars(lows)
    book = (D(bid), D(bid) + T)
    for a in trail_target(p, trail, ExitView(bars=bars, book=book), CFG, T, bars[-1].ts + 60, activation):
        if isinstance(a, TrailEval) and a.move_to is not None:
            assert better(side, a.move_to, trail.stop_price)
            assert better(side, a.market, a.move_to)


@settings(max_examples=200, deadline=None)
@given(side=st.sampled_from(["long", "short"]), filled=st.lists(st.integers(0, 100), min_size=3, max_size=3),
       account=st.integers(0, 400), found=st.integers(0, 400), flattened=st.integers(0, 300))
def test_no_booking_and_no_market_close_is_more_than_is_held(side, filled, account, found, flattened):
    p = _legged(side)
    for leg, pct in zip(p.legs, filled):
        leg.filled_qty = (leg.qty * pct / 100).quantize(F.step_size)
    p.flatten_qty = min(D(flattened) * F.step_size, p.filled_qty - sum((lg.filled_qty for lg in p.legs), D(0)))
    held = held_qty(p, FEE, F.step_size)
    a = market_close(p, FEE, F)
    assert a.qty <= held
    v = ExitView(account_base=D(account) * F.step_size, uncounted=D(0), foreign_qty=D(found) * F.step_size,
                 foreign_quote=D(found))
    for act in manual_close(p, v, FEE, F, margin=False):
        if isinstance(act, BookManual):
            assert 0 < act.qty <= held


@settings(max_examples=200, deadline=None)
@given(side=st.sampled_from(["long", "short"]), limit=prices, market=prices,
       since=st.one_of(st.none(), st.floats(0, 100)), now=st.floats(0, 200), grace=st.floats(0, 50),
       fresh=st.booleans(), resting=st.one_of(st.none(), st.booleans()))
def test_a_gap_flattens_only_past_the_limit_after_the_grace_and_only_a_stop_still_resting(
        side, limit, market, since, now, grace, fresh, resting):
    acts = stop_gap(side, _stop(limit), ExitView(executable=market, stop_resting=resting), since, now, grace, fresh)
    gapped = [a for a in acts if isinstance(a, StopGapped)]
    if gapped:
        start = now if since is None else since
        assert (market < limit if side == "long" else market > limit)
        assert now - start >= grace and gapped[0].passed_sec == now - start
        assert fresh or resting is True
# ---- the replay's quiet stretches (waits_for_market) ----------------------------------------------------------

@pytest.mark.parametrize("case, build, quiet", [
    ("every leg resting", lambda: _legged(), True),
    ("tp1 took profit, break-even done", lambda: _legged(statuses=("DONE", "PLACED", "PLACED"),
                                                         reasons=("tp", "", ""), be_done=True), True),
    ("tp1 took profit, break-even still due", lambda: _legged(statuses=("DONE", "PLACED", "PLACED"),
                                                              reasons=("tp", "", "")), False),
    ("tp2 done: the trailing starts", lambda: _legged(statuses=("DONE", "DONE", "PLACED"), reasons=("tp", "tp", ""),
                                                      be_done=True), False),
    ("trailing", lambda: _legged(statuses=("DONE", "DONE", "PLACED"), reasons=("tp", "tp", ""), be_done=True,
                                 trailing=True), False),
    ("a leg not placed yet", lambda: _legged(statuses=("PLACED", "NEW", "PLACED")), False),
    ("a stop move under way", lambda: _legged(statuses=("PLACED", "REPLACING", "PLACED")), False),
    ("every leg done: closing", lambda: _legged(statuses=("DONE", "DONE", "DONE"), reasons=("stop",) * 3), False),
    ("flatten requested", lambda: _legged(flatten_requested="operator"), False),
    ("no legs planned", lambda: _pos(), False),
    ("entry not filled", lambda: _legged(status=Phase.OPEN), False),
])
def test_waits_for_market_only_when_nothing_but_a_price_can_move_the_exits(case, build, quiet):
    assert waits_for_market(build(), "margin") is quiet, case


def test_a_refused_leg_or_a_lost_stop_is_never_quiet():
    p = _legged()
    p.legs[1].errors = 1
    assert waits_for_market(p, "margin") is False
    p = _legged()
    p.legs[0].stop_lost_at = 5.0
    assert waits_for_market(p, "margin") is False


def test_a_spot_long_waits_for_its_dust_carry_to_be_decided():
    p = _legged()
    assert waits_for_market(p, "spot") is False      # the carry is decided once the stops rest
    p.dust_checked = True
    assert waits_for_market(p, "spot") is True
    assert waits_for_market(_legged(side="short"), "spot") is True   # no carry for a short
