"""The entry side's decisions, pure: what to do next with an entry order in progress, as typed actions (the exit
side's are in exit_decide.py). services/position_engine/tracker.py reads the exchange, calls these and carries
the actions out; the state changes they lead to are the named transitions of transitions.py.

- `entry_cancel_due`: the operator's cancel, or LIVE_ENTRY_TIMEOUT_SEC of market time for a resting limit entry;
- `entry_missing`: the exchange does not know the entry's client id: wait out the grace (a -2013 right after
  sending is no proof), abort an acknowledged order that vanished or one the operator cancelled, else send it;
- `entry_ended_unfilled`: a cancelled or expired entry goes to Plan B (LIMIT_THEN_MARKET's market order for the
  rest, when the price allows: `planb_decision`) or ends; what filled is kept either way.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Union

import msgspec

from shared.domain.entry_rules import entry_order_args, wants_planb
from shared.domain.position import Phase, Position


class CancelEntry(msgspec.Struct, frozen=True, tag=True):
    """Ask the exchange to cancel the entry order."""
    why: str            # operator | timeout


class WaitEntry(msgspec.Struct, frozen=True, tag=True):
    """Nothing to do yet (the exchange's answer is still to come)."""


class ResendEntry(msgspec.Struct, frozen=True, tag=True):
    """The intent is recorded and the exchange has no such order: send it (same client id)."""


class AbortEntry(msgspec.Struct, frozen=True, tag=True):
    """End the entry: free the slot, keep what filled (the exit side takes a partial fill over)."""
    reason: str
    alert: bool = False   # an acknowledged order vanished: an ERROR alert besides the event


class PlanB(msgspec.Struct, frozen=True, tag=True):
    """Send a MARKET order for what the limit entry did not fill."""
    remaining: Decimal


class NeedPrice(msgspec.Struct, frozen=True, tag=True):
    """Plan B is wanted: read the book, then decide with `planb_or_abort`."""


EntryAction = Union[CancelEntry, WaitEntry, ResendEntry, AbortEntry, PlanB, NeedPrice]


def entry_cancel_due(pos: Position, now: float, timeout_sec: float) -> CancelEntry | None:
    """A working entry is cancelled when the operator asked, or when its limit order has rested `timeout_sec`
    of market time (a MARKET entry is never timed out)."""
    if pos.status != Phase.OPEN:
        return None
    if pos.entry_cancel_requested:
        return CancelEntry("operator")
    if entry_order_args(pos)["order_type"] != "MARKET" and now - pos.created_at >= timeout_sec:
        return CancelEntry("timeout")
    return None


def entry_missing(pos: Position, wall_now: float, grace_sec: float) -> EntryAction:
    """The exchange answers -2013 for the entry's client id."""
    if wall_now - pos.entry_sent_at < grace_sec:
        return WaitEntry()
    if pos.status == Phase.OPEN:
        return AbortEntry("entry order not found on the exchange", alert=True)
    if pos.entry_cancel_requested:
        return AbortEntry("cancelled by operator before the order reached the exchange")
    return ResendEntry()


def entry_ended_unfilled(pos: Position, status: str, remaining_tradable: bool) -> EntryAction:
    """The entry order ended (cancelled / expired) with `pos` holding its fills: Plan B (price to be read) or
    the end of the entry."""
    if wants_planb(pos, remaining_tradable):
        return NeedPrice()
    return AbortEntry(ended_reason(pos, status))


def planb_or_abort(pos: Position, status: str, refusal: str | None) -> EntryAction:
    """With the book read: `planb_decision`'s refusal (None: go) decides between Plan B and the end."""
    if refusal is None:
        return PlanB(pos.qty - pos.filled_qty)
    return AbortEntry(ended_reason(pos, status))


def ended_reason(pos: Position, status: str) -> str:
    """The abort reason of an entry that ended: its status and what it filled."""
    filled = f"{pos.filled_qty.normalize():f}" if pos.filled_qty else "nothing"
    return (f"entry {status.lower()} with {filled} filled"
            + (" (cancelled by operator)" if pos.entry_cancel_requested else ""))
