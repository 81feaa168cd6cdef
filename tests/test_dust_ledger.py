"""The dust ledger (issue 22 §4), pure: what a trade leaves, what the next trade's last leg may carry, and the
state document's balance across a close (older documents load with 0)."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from shared.domain import transitions as tr
from shared.domain.dust import carry, carry_due, our_locked, settle, trade_delta
from shared.domain.exit_rules import close_summary, plan_legs
from shared.domain.position import LegStatus, State, decode_state, encode_state, net_qty
from tests.test_exit_rules import F, _pos

D = Decimal
STEP = F.step_size


def test_old_state_documents_load_with_an_empty_ledger():
    raw = b'{"schema": 1, "version": 7, "position": null, "closed_count": 3}'
    st_ = decode_state(raw)
    assert st_.dust == 0 and st_.version == 7
    st_.dust = D("0.00000889")
    assert decode_state(encode_state(st_)).dust == D("0.00000889")


def test_a_closed_long_adds_what_it_bought_less_commission_and_sold():
    pos = _pos()   # 0.0009 bought, 0.0000009 commission: 0.0008991 held, legs sell 0.00089
    legs = plan_legs(pos, F, 2)
    for lg in legs:
        lg.filled_qty, lg.filled_quote = lg.qty, lg.qty * D(101000)
    pos.legs = legs
    assert trade_delta(pos) == D("0.0000091")
    st_ = State(position=pos, dust=D("0.000005"))
    tr.closed(st_, pos.trade_key, close_summary(pos, 1.0), 0.0, [])
    assert st_.dust == D("0.0000141") and st_.last_closed.dust_delta == D("0.0000091")


def test_the_last_leg_carries_the_ledgers_whole_steps_and_the_close_takes_them_out():
    pos = _pos()
    legs = plan_legs(pos, F, 2)
    trail_before = legs[-1].qty
    extra = carry(D("0.0000141"), free_base=net_qty(pos) + D("0.0000141"), held=net_qty(pos), step=STEP)
    assert extra == D("0.00001")
    again = _pos()
    assert tr.legs_planned(again, legs, net_qty(pos), extra)   # a retried transaction: the same legs again
    assert tr.legs_planned(pos, legs, net_qty(pos), extra)
    assert legs[-1].qty == trail_before, "the planned legs themselves are never changed"
    assert pos.legs[-1].qty == trail_before + extra and pos.dust_in == extra
    assert pos.exit_qty == net_qty(pos) + extra
    for lg in pos.legs:
        lg.filled_qty = lg.qty
    st_ = State(position=pos, dust=D("0.0000141"))
    tr.closed(st_, pos.trade_key, close_summary(pos, 1.0), 0.0, [])
    # the carried step was sold; this trade's own leftover (0.0000091) is added
    assert st_.dust == D("0.0000141") - extra + D("0.0000091")


def test_the_carry_is_decided_once_the_stops_rest_and_grows_the_resting_trailing_stop():
    pos = _pos()
    assert tr.legs_planned(pos, plan_legs(pos, F, 2), net_qty(pos))
    assert not carry_due(pos, "spot")                     # nothing rests yet: no account read before the stops
    for lg in pos.legs:
        lg.status = LegStatus.PLACED
    assert carry_due(pos, "spot") and not carry_due(pos, "margin") and not carry_due(_pos(side="short"), "spot")
    assert our_locked(pos) == sum(lg.qty for lg in pos.legs)
    trail = pos.legs[-1]
    before, attempt = trail.qty, trail.attempt
    ids = tr.dust_carried(pos, STEP, 5.0)
    assert ids is not None and ids.stop_id == trail.stop_client_id and trail.attempt == attempt + 1
    assert trail.status == LegStatus.REPLACING and trail.qty == before + STEP and trail.stop_price == pos.sl
    assert pos.dust_in == STEP and pos.exit_qty == net_qty(pos) + STEP and pos.dust_checked
    assert not carry_due(pos, "spot") and tr.dust_carried(pos, STEP, 6.0) is None   # once
    undone = decode_state(encode_state(State(position=pos))).position   # the exchange refused the grown stop
    tr.stop_move_undone(undone, undone.legs[-1], attempt + 1, undone.sl, undone.legs[-1].stop_limit)
    assert undone.legs[-1].qty == before and undone.legs[-1].status == LegStatus.PLACED
    assert undone.dust_in == 0 and undone.exit_qty == net_qty(undone) and undone.dust_checked
    nothing = _pos()
    tr.legs_planned(nothing, plan_legs(nothing, F, 2), net_qty(nothing))
    for lg in nothing.legs:
        lg.status = LegStatus.PLACED
    assert tr.dust_carried(nothing, D(0), 5.0) is None and nothing.dust_checked and nothing.dust_in == 0


def test_a_short_leaves_nothing_in_the_ledger():
    assert trade_delta(_pos(side="short")) == 0


@given(ledger=st.integers(0, 500), free=st.integers(0, 500), held=st.integers(0, 300))
def test_carry_never_sells_more_than_the_ledger_or_the_free_coins(ledger, free, held):
    unit = D("0.0000001")   # a tenth of a step
    extra = carry(ledger * unit, free * unit, held * unit, STEP)
    assert extra >= 0 and extra % STEP == 0
    assert extra <= ledger * unit and held * unit + extra <= max(free * unit, held * unit)


@given(ledger=st.integers(0, 10**6), delta=st.integers(-10**6, 10**6))
def test_settle_never_goes_below_zero(ledger, delta):
    out = settle(D(ledger) * STEP, D(delta) * STEP)
    assert out >= 0 and (out == D(ledger + delta) * STEP or ledger + delta < 0)


def test_preflight_and_the_report_name_the_same_fee_case():
    from shared.domain import preflight as PF
    from shared.domain.dust import fee_case
    args = dict(price=D(90000), qty_usd=D(100), sl_pct=D("0.002"), tp_r=(D(1), D(2)), step=STEP,
                fee_rate=D("0.001"), base="BTC", quote="USDC")
    in_base = PF.plan(base_commission=True, **args).detail
    in_bnb = PF.plan(base_commission=False, **args).detail
    assert "dust left 0.00000889 BTC" in in_base and "carried in the dust ledger" in in_base
    assert "dust left 0.00000000 BTC" in in_bnb and fee_case(False, "BTC") in in_bnb
    assert "commission taken in BTC" in fee_case(True, "BTC") and "no commission taken in BTC" in fee_case(False, "BTC")
