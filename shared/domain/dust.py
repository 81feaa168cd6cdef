"""The ledger of the product's own leftover base (issue 22 §4), pure.

On spot the commission of a buy is taken from the bought coins and the legs sell whole steps, so each long trade
leaves a little base (below one step) in the account. The ledger (`State.dust`) counts only what the exchange's
fills prove the product bought and did not sell; the next trade's last leg carries the ledger's whole steps
(`carry`), so the dust is sold as soon as it adds up to a step, and never more than the ledger holds. The carry
is decided once the legs' stops rest (`carry_due`): the account read it needs never delays the first protection,
and the resting trailing stop takes the carried steps in one cancelReplace (`transitions.dust_carried`).
"""
from __future__ import annotations

from decimal import Decimal

import msgspec

from shared.domain.position import Leg, LegStatus, Position, net_qty
from shared.domain.risk_math import floor_to_step

ZERO = Decimal(0)


def carry(ledger: Decimal, free_base: Decimal, held: Decimal, step: Decimal) -> Decimal:
    """Whole steps of the ledger a new long trade's last leg may sell besides its own coins: capped by the ledger
    and by the account's free base beyond what the trade itself holds (coins the product did not buy are never
    sold, nor coins that are gone)."""
    spare = min(ledger, free_base - held)
    return floor_to_step(spare, step) if spare >= step else ZERO


def carry_due(pos: Position, trade_mode: str) -> bool:
    """Whether the ledger's carry is still to be decided for this trade (spot long, not decided yet) and may be
    now: every leg rests or is done (no first placement waits for the account read) and the trailing stop, which
    takes the carried steps, rests."""
    if trade_mode != "spot" or pos.side != "long" or pos.dust_checked or pos.dust_in > 0 or pos.flatten_requested:
        return False
    if any(lg.status in (LegStatus.NEW, LegStatus.REPLACING) for lg in pos.legs):
        return False
    return any(lg.name == "trail" and lg.status == LegStatus.PLACED for lg in pos.legs)


def our_locked(pos: Position) -> Decimal:
    """The base the trade's resting legs lock on the exchange (their remaining quantities)."""
    return sum((lg.qty - lg.filled_qty for lg in pos.legs if lg.status == LegStatus.PLACED), ZERO)


def with_carry(legs: list[Leg], extra: Decimal) -> list[Leg]:
    """A new list of the planned legs with `extra` added to the last one (the runner when there is one); the
    given legs are left as they are (a transaction that is retried applies this again to the same legs)."""
    if extra <= 0 or not legs:
        return list(legs)
    return [*legs[:-1], msgspec.structs.replace(legs[-1], qty=legs[-1].qty + extra)]


def trade_delta(pos: Position) -> Decimal:
    """What a closed long trade changes the ledger by: its coins after the base commission less everything its
    legs and market closes sold (negative when it sold carried dust). A short leaves none on spot: 0."""
    if pos.side != "long":
        return ZERO
    sold = sum((lg.filled_qty for lg in pos.legs), ZERO) + pos.flatten_qty
    return net_qty(pos) - sold


def settle(ledger: Decimal, delta: Decimal) -> Decimal:
    """The ledger after a trade's delta (never below zero: a trade cannot sell more dust than the ledger held)."""
    return max(ZERO, ledger + delta)


def fee_case(base_commission: bool, base: str, paid_in: str = "") -> str:
    """Which case applies, in the words preflight and the report both print (`paid_in`: the asset the exchange's
    records show the fees were paid in, when it is known and not the base)."""
    if base_commission:
        return (f"commission taken in {base} from each buy: the leftover below one step is the product's own, kept "
                "in the dust ledger and sold with a later trade's last leg once it adds up to a step")
    if paid_in:
        return f"fees paid in {paid_in}: no commission taken in {base}, a buy leaves no dust"
    return f"fees paid in BNB (or the quote asset): no commission taken in {base}, a buy leaves no dust"
