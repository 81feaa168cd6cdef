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
