"""Pure rules for telling coins that moved outside the executor's orders (a person closed the trade by hand)
from the trade's own fills, by the base asset's net on a margin wallet (free + locked - borrowed - interest).

The wallet may hold other coins and debts than the trade's, so the net is compared with a baseline read once the
legs rest: `baseline = net - exits_effect(pos)` then; later `exits_effect` says how the trade's counted fills
moved the net since, and what is left unexplained is the gap. A baseline read while one of our fills was not
counted yet errs towards a smaller gap (never a false manual close)."""
from __future__ import annotations

from decimal import Decimal

from shared.domain.position import Position
from shared.domain.risk_math import floor_to_step


def exits_done(pos: Position) -> Decimal:
    """Base quantity the trade's exits have traded so far (legs and flatten orders, counted fills only)."""
    return sum((leg.filled_qty for leg in pos.legs), Decimal(0)) + pos.flatten_qty


def exits_effect(pos: Position, fee_rate: Decimal) -> Decimal:
    """Signed change the counted exit fills made to the wallet's base net: a long's sells take coins out, a
    short's buys bring them in less the commission taken in the base asset."""
    done = exits_done(pos)
    return -done if pos.side == "long" else done * (1 - fee_rate)


def wallet_baseline(pos: Position, net: Decimal, fee_rate: Decimal) -> Decimal:
    """The baseline to keep once the legs rest: the net as it would be without the trade's counted exits."""
    return net - exits_effect(pos, fee_rate)


def exposure_gap(pos: Position, baseline: Decimal, net: Decimal, fee_rate: Decimal) -> Decimal:
    """How much of the position moved outside the counted fills: coins a long no longer has, or coins a short got
    back (0 or less: none)."""
    expected = baseline + exits_effect(pos, fee_rate)
    return expected - net if pos.side == "long" else net - expected


def gap_tolerance(pos: Position, fee_rate: Decimal, min_qty: Decimal) -> Decimal:
    """Below this a gap is noise: a short's buys may pay their commission in another asset (BNB) than the base
    that `exits_effect` assumes."""
    return min_qty + (exits_done(pos) * fee_rate if pos.side == "short" else Decimal(0))


def traded_qty(side: str, gap: Decimal, fee_rate: Decimal) -> Decimal:
    """The gap as the quantity traded to cause it: a buy-back of a short brought in what it bought less the
    commission taken in the base asset (the trade's exit quantity is counted gross, like its legs)."""
    return gap if side == "long" else gap / (1 - fee_rate)


def manual_booking(gap: Decimal, found_qty: Decimal, step: Decimal, min_qty: Decimal) -> Decimal:
    """What to book as closed by hand: the gap as far as the account's own trades outside our orders prove it
    (a transfer in or out of the wallet is not a trade and books nothing), floored to the step; 0 below min_qty."""
    qty = floor_to_step(min(gap, found_qty), step) if gap > 0 and found_qty > 0 else Decimal(0)
    return qty if qty >= min_qty else Decimal(0)
