"""The pure rules that tell a manual close on a margin wallet from the trade's own fills (shared/domain/holdings.py)."""
from __future__ import annotations

from decimal import Decimal

from hypothesis import given
from hypothesis import strategies as st

from shared.domain.exit_rules import leg_spent
from shared.domain.holdings import (
    exposure_gap,
    gap_tolerance,
    manual_booking,
    traded_qty,
    wallet_baseline,
)
from shared.domain.position import Leg
from shared.domain.symbol import SymbolFilters
from tests.test_exit_rules import _pos

D = Decimal
FEE = D("0.001")
STEP = D("0.00001")
F = SymbolFilters("BTCUSDC", "BTC", "USDC", D("0.01"), STEP, STEP, D(9000), D(5))


def _legs(filled: list[str]) -> list[Leg]:
    return [Leg(name=n, qty=D("0.0003"), stop_price=D(99000), stop_limit=D(98990), filled_qty=D(f))
            for n, f in zip(("tp1", "tp2", "trail"), filled)]


def test_a_long_whose_coins_left_outside_its_orders_has_a_gap():
    pos = _pos(legs=_legs(["0", "0", "0"]))
    base = wallet_baseline(pos, D("1.5009"), FEE)           # 1.5 BTC of the account's own + the trade's 0.0009
    assert exposure_gap(pos, base, D("1.5009"), FEE) == 0
    pos.legs[0].filled_qty = D("0.0003")                    # our tp1 sold 0.0003: explained, no gap
    assert exposure_gap(pos, base, D("1.5006"), FEE) == 0
    assert exposure_gap(pos, base, D("1.5000"), FEE) == D("0.0006")   # the rest sold by hand
    assert exposure_gap(pos, base, D("2.5006"), FEE) < 0    # a transfer in is never a gap for a long


def test_a_short_bought_back_by_hand_has_a_gap_in_net_and_in_traded_quantity():
    pos = _pos(side="short", legs=_legs(["0", "0", "0"]), entry_fee_base=D(0))
    base = wallet_baseline(pos, D("-0.0009"), FEE)
    assert base == D("-0.0009")
    pos.legs[0].filled_qty = D("0.0003")                    # our tp1 bought 0.0003, received 0.0003 less fee
    assert exposure_gap(pos, base, D("-0.0009") + D("0.0003") * (1 - FEE), FEE) == 0
    bought = D("0.0006")                                    # a person bought the rest
    net = D("-0.0009") + (D("0.0003") + bought) * (1 - FEE)
    gap = exposure_gap(pos, base, net, FEE)
    assert gap == bought * (1 - FEE) and traded_qty("short", gap, FEE) == bought
    assert exposure_gap(pos, base, D("-0.0009") + D("0.0003") * (1 - FEE) - D("0.1"), FEE) < 0  # more debt: no gap


def test_tolerance_covers_a_commission_paid_in_another_asset():
    pos = _pos(side="short", legs=_legs(["0.0003", "0.0003", "0"]), entry_fee_base=D(0))
    base = wallet_baseline(pos, D("-0.0009") + D("0.0006") * (1 - FEE), FEE)
    net_bnb_fees = D("-0.0009") + D("0.0006")               # the exchange took its fee in BNB: a bit more came in
    gap = exposure_gap(pos, base, net_bnb_fees, FEE)
    assert 0 < gap < gap_tolerance(pos, FEE, STEP)
    assert gap_tolerance(_pos(legs=_legs(["0.0003", "0", "0"])), FEE, STEP) == STEP  # a long's sells: base exact


def test_only_what_trades_prove_is_booked():
    assert manual_booking(D("0.0006"), D("0.0006"), STEP, STEP) == D("0.0006")
    assert manual_booking(D("0.0006"), D("0.0002"), STEP, STEP) == D("0.0002")   # the rest is not a trade
    assert manual_booking(D("0.0006"), D(0), STEP, STEP) == 0                    # a transfer: nothing booked
    assert manual_booking(D("0.000005"), D("0.0006"), STEP, STEP) == 0           # below the minimum
    assert manual_booking(D("0.00061234"), D("1"), STEP, STEP) == D("0.00061")   # whole steps


@given(st.integers(min_value=0, max_value=300), st.integers(min_value=0, max_value=300),
       st.integers(min_value=-10**6, max_value=10**6))
def test_our_own_fills_never_look_like_a_manual_close(sold1: int, sold2: int, other: int):
    """Whatever our legs filled and whatever else the wallet held at the baseline, the gap is 0 (long and short)."""
    for side in ("long", "short"):
        pos = _pos(side=side, legs=_legs(["0", "0", "0"]), entry_fee_base=D(0))
        start = D(other) * STEP + (D("0.0009") if side == "long" else D("-0.0009"))
        base = wallet_baseline(pos, start, FEE)
        pos.legs[0].filled_qty, pos.legs[1].filled_qty = D(sold1) * STEP, D(sold2) * STEP
        moved = (D(sold1) + D(sold2)) * STEP
        net = start - moved if side == "long" else start + moved * (1 - FEE)
        assert exposure_gap(pos, base, net, FEE) == 0


def test_a_leg_is_spent_below_the_minimum_quantity_or_notional():
    leg = Leg(name="tp1", qty=D("0.0003"), tp_price=D(101000), stop_price=D(99000), stop_limit=D(98990))
    assert not leg_spent(leg, F)
    leg.filled_qty = D("0.00029")                           # 0.00001 left: 0.99 USDC at the stop's limit
    assert leg_spent(leg, F)
    leg.filled_qty = D("0.00025")                           # 0.00005 left: 4.95 USDC < 5 at 98990
    assert leg_spent(leg, F)
    leg.filled_qty = D("0.00024")                           # 0.00006 left: 5.94 USDC
    assert not leg_spent(leg, F)
