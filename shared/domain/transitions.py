"""Every change of the position, named: pure transitions of the state document.

The services never write the document by hand: they hand one of these (often through functools.partial) to the
state store, which applies it inside its optimistic-concurrency transaction (shared/adapters/state_store.py) to a
fresh copy of the document, as many times as it has to retry. So a transition touches nothing but the copy it is
given: no I/O, no clock (times are arguments), and its return value tells the caller what it did.

Position-level transitions take `(p, ...)` (or `(p, leg, ...)`) and are applied through `on_position` /
`on_leg`, which skip the change when the slot no longer holds that trade in the expected phase. State-level
transitions take `(st, ...)` and return `(state, messages)` or None (nothing to write), the store's own contract.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from shared.domain.exit_rules import LegFills, LegIds, count_attempt, leg_ids, leg_spent, share_out, with_ids
from shared.domain.dust import settle, with_carry
from shared.domain.messages import PositionEvent
from shared.domain.order_ids import client_id
from shared.domain.position import ClosedTrade, Leg, LegStatus, Phase, Position, State, net_qty
from shared.domain.symbol import SymbolFilters

Message = tuple[str, PositionEvent]


class Applied:
    """What the last application of a transition returned (the store may apply it more than once)."""
    __slots__ = ("result",)

    def __init__(self) -> None:
        self.result: Any = None


def on_position(st: State, trade_key: str, phases: Sequence[Phase], applied: Applied,
                transition: Callable[..., Any], args: tuple = ()) -> tuple[State, list[Message]] | None:
    """Apply `transition(position, *args)` when the slot still holds `trade_key` in one of `phases`."""
    p = st.position
    if p is None or p.trade_key != trade_key or p.status not in phases:
        return None
    applied.result = transition(p, *args)
    return st, []


def on_leg(p: Position, name: str, transition: Callable[..., Any], *args: Any) -> Any:
    """Apply `transition(position, leg, *args)` to the leg called `name`."""
    return transition(p, next(leg for leg in p.legs if leg.name == name), *args)


def event(stream: str, kind: str, trade_key: str, now: float, **detail: object) -> Message:
    """A `positions` stream message."""
    return stream, PositionEvent(kind=kind, trade_key=trade_key, at=now, detail=detail)


# ---- the entry phase (position_engine) -----------------------------------------------------------------------

def entry_placed(st: State, pos: Position, now: float, lock_until: float, refused: Callable[[State], bool],
                 messages: list[Message]) -> tuple[State, list[Message]] | None:
    """Claim the slot for a new PENDING position and start the lock, unless `refused(state)` (the gates,
    re-checked inside the transaction)."""
    if refused(st):
        return None
    st.position, st.lock_until = pos, lock_until
    return st, messages


def lock_started(st: State, until: float) -> tuple[State, list[Message]] | None:
    """Start the lock without a position (a signal whose plan is skipped holds the next ones off too)."""
    if st.lock_until >= until:
        return None
    st.lock_until = until
    return st, []


def entry_adopted(st: State, pos: Position, lock_until: float,
                  messages: list[Message]) -> tuple[State, list[Message]] | None:
    """Put a position found on the exchange into an empty slot."""
    if st.position is not None:
        return None
    st.position, st.lock_until = pos, max(st.lock_until, lock_until)
    return st, messages


def entry_acknowledged(p: Position, order_id: int) -> None:
    """The exchange has the entry order: OPEN."""
    p.status, p.entry_order_id = Phase.OPEN, order_id


def entry_resent(p: Position, at: float) -> None:
    """The entry is sent (again) at wall time `at`."""
    p.entry_sent_at = at


def entry_fill_counted(p: Position, cid: str, qty: Decimal, quote: Decimal, fee_base: Decimal) -> bool:
    """Carry a final entry attempt's executed quantity (and its base-asset commission) into the position, once
    per attempt; False when that attempt is not the current one or is counted already."""
    if cid != p.entry_client_id or p.counted_client_id == cid:
        return False
    p.filled_qty += qty
    p.entry_fee_base += fee_base
    p.filled_quote += quote
    p.counted_client_id = cid
    return True


def planb_started(p: Position, at: float) -> None:
    """Plan B: a new entry attempt (a market order for the rest), PENDING again."""
    p.entry_attempt += 1
    p.entry_client_id = client_id(p.trade_key, "entry", p.entry_attempt)
    p.entry_sent_at = at
    p.status = Phase.PENDING
    p.entry_order_id = 0


def entry_cancel_requested(p: Position) -> None:
    """The operator cancelled the entry: no Plan B, no re-send."""
    p.entry_cancel_requested = True


def borrow_recorded(p: Position, asset: str, amount: Decimal, tran_id: int,
                    debt_before: Decimal = Decimal(0)) -> None:
    """MARGIN_BORROW_MODE=manual: the borrow's intent (tran_id 0), its confirmation (-1) or none at all."""
    p.margin_borrow_asset, p.margin_borrowed, p.margin_borrow_tran_id = asset, amount, tran_id
    p.margin_debt_before = debt_before


def borrow_done(p: Position, tran_id: int) -> None:
    """The manual borrow happened (its transaction id, -1: confirmed by the account's debt)."""
    p.margin_borrow_tran_id = tran_id


def entry_filled(p: Position, now: float, tick: Decimal) -> None:
    """The entry is over with a fill: OPEN_FILLED with its average entry price to a hundredth of a tick (as
    reported; break-even rounds the exact average, `exact_avg_entry`, once)."""
    p.status, p.filled_at = Phase.OPEN_FILLED, now
    p.avg_fill = p.filled_quote / p.filled_qty
    p.avg_entry = p.avg_fill.quantize(tick / 100)


def handed_over(st: State, trade_key: str, phases: Sequence[Phase], now: float, tick: Decimal,
                stream: str) -> tuple[State, list[Message]] | None:
    """`entry_filled` and the ENTRY_FILLED event that hands the position to the exit manager, atomically; the
    event carries the position (the exit manager takes it from there)."""
    p = st.position
    if p is None or p.trade_key != trade_key or p.status not in phases:
        return None
    entry_filled(p, now, tick)
    return st, [filled_event(stream, p, now)]


def filled_event(stream: str, p: Position, now: float) -> Message:
    """ENTRY_FILLED with what the exit manager needs to start: quantity, average fill, and the position."""
    return event(stream, "ENTRY_FILLED", p.trade_key, now, qty=str(p.filled_qty), avg_entry=str(p.avg_entry),
                 position=p)


def entry_aborted(st: State, trade_key: str, phases: Sequence[Phase], gone: Applied,
                  messages: list[Message]) -> tuple[State, list[Message]] | None:
    """Free the slot of an entry that ended unfilled (`gone.result`: the position that was there)."""
    if st.position is None or st.position.trade_key != trade_key or st.position.status not in phases:
        return None
    gone.result, st.position = st.position, None
    return st, messages


# ---- the exit phase (exit_manager) -----------------------------------------------------------------------------

def legs_planned(p: Position, legs: list[Leg], total: Decimal, dust_in: Decimal = Decimal(0)) -> bool:
    """The exit legs and the exit total (with the ledger dust the last leg carries), written once (False: they
    were there already)."""
    if p.legs:
        return False
    p.legs, p.exit_qty, p.dust_in = with_carry(legs, dust_in), total + dust_in, dust_in
    return True


def dust_carried(p: Position, extra: Decimal, at: float) -> LegIds | None:
    """The ledger's carry is decided (once, after the legs rested): with `extra` > 0 the resting trailing stop
    grows by it, recorded before it is carried out (a new attempt with new ids, REPLACING, same stop: the stop
    mover's cancelReplace finishes it), and the exit total with it. None when nothing is to be sent."""
    if p.dust_checked:
        return None
    p.dust_checked = True
    trail = next((lg for lg in p.legs if lg.name == "trail"), None)
    if extra <= 0 or trail is None or trail.status != LegStatus.PLACED:
        return None
    trail.attempt += 1
    trail.status, trail.qty, trail.placed_at = LegStatus.REPLACING, trail.qty + extra, at
    with_ids(trail, p.trade_key)
    p.exit_qty, p.dust_in = (p.exit_qty if p.exit_qty > 0 else net_qty(p)) + extra, extra
    return leg_ids(p.trade_key, trail.name, trail.attempt)


def leg_placed(p: Position, leg: Leg, at: float) -> None:
    """The leg's current attempt rests on the exchange (wall time `at`: the watchdog's grace runs from it); a stop
    the exchange expired is replaced by it."""
    leg.status, leg.placed_at = LegStatus.PLACED, at
    leg.stop_lost_at, leg.stop_lost_refusals = 0.0, 0


def stop_lost(p: Position, leg: Leg, now: float) -> None:
    """The exchange expired the leg's stop and the leg (back to NEW) holds coins without one since `now` (stack
    time); the first expiry counts until a placement rests again."""
    if leg.status == LegStatus.NEW and leg.stop_lost_at <= 0:
        leg.stop_lost_at, leg.stop_lost_refusals = now, 0


def leg_rejected(p: Position, leg: Leg, now: float, retry_sec: float) -> None:
    """The exchange refused the leg: count it, retry after `retry_sec` (market time; EXITS_RETRY_EVERY_SEC, or
    SL_WATCHDOG_RETRY_SEC for a leg whose stop the exchange expired: exit_decide.refused_retry_sec)."""
    leg.errors += 1
    if leg.stop_lost_at > 0:
        leg.stop_lost_refusals += 1
    p.exits_tries += 1
    p.exits_next_at = now + retry_sec
    if p.exits_first_error_at <= 0:
        p.exits_first_error_at = now


def stop_set_nearest(p: Position, leg: Leg, stop: Decimal, limit: Decimal) -> None:
    """STOP_IMMEDIATE_ACTION=nearest: the unplaced leg's stop moves to the nearest price that does not trigger."""
    if leg.status == LegStatus.NEW:
        leg.stop_price, leg.stop_limit = stop, limit


def stop_moved(p: Position, leg: Leg, stop: Decimal, limit: Decimal, at: float) -> LegIds | None:
    """A stop move, recorded before it is carried out: a new attempt with new ids, REPLACING. None when the leg
    is not resting or the stop would not be in the position's favour (a stop never loosens)."""
    if leg.status != LegStatus.PLACED or not _better(p.side, stop, leg.stop_price):
        return None
    leg.attempt += 1
    leg.status, leg.stop_price, leg.stop_limit = LegStatus.REPLACING, stop, limit
    leg.placed_at = at  # the watchdog's grace for a stop in motion runs from here
    with_ids(leg, p.trade_key)
    return leg_ids(p.trade_key, leg.name, leg.attempt)


def stop_move_undone(p: Position, leg: Leg, moving: int, stop: Decimal, limit: Decimal) -> None:
    """The exchange refused the move and the old stop still rests: back to the old attempt, PLACED. A move to the
    same stop is the dust carry's (`dust_carried`): the carried steps leave the leg and the exit total again (the
    ledger keeps them for a later trade)."""
    if leg.status == LegStatus.REPLACING and leg.attempt == moving:
        if stop == leg.stop_price and p.dust_in > 0:
            leg.qty, p.exit_qty, p.dust_in = leg.qty - p.dust_in, p.exit_qty - p.dust_in, Decimal(0)
        leg.attempt -= 1
        leg.stop_price, leg.stop_limit, leg.status = stop, limit, LegStatus.PLACED
        with_ids(leg, p.trade_key)


def attempt_counted(p: Position, leg: Leg, attempt: int, fills: LegFills, f: SymbolFilters) -> bool:
    """What one attempt of the leg filled, counted once (DONE when nothing tradeable remains)."""
    return count_attempt(leg, attempt, fills, f)


def leg_filled(p: Position, leg: Leg, attempt: int, fills: LegFills, f: SymbolFilters) -> None:
    """An attempt of a resting leg is over: count its fills; DONE when nothing tradeable remains, else NEW (a new
    attempt, new ids) to protect the rest."""
    if count_attempt(leg, attempt, fills, f) and leg.status == LegStatus.PLACED:
        leg.attempt += 1
        leg.status = LegStatus.NEW
        with_ids(leg, p.trade_key)


def break_even_done(p: Position) -> None:
    """Every stop is at break-even (or its leg is done)."""
    p.be_done = True


def break_even_failed(p: Position, now: float, max_attempts: int, cooldown_sec: float) -> None:
    """A break-even round left a stop behind: after TP1_BE_MAX_ATTEMPTS, wait TP1_BE_COOLDOWN_SEC."""
    p.be_attempts += 1
    if p.be_attempts >= max_attempts:
        p.be_attempts, p.be_next_at = 0, now + cooldown_sec


def trailing_started(p: Position) -> None:
    """TP2 filled: the last leg's stop trails from here."""
    p.trailing = True


def trail_evaluated(p: Position, now: float) -> None:
    """The trailing stop was evaluated at market time `now` (the next after TRAIL_UPDATE_EVERY_SEC)."""
    p.trail_last_at = now


def flatten_requested(p: Position, reason: str) -> None:
    """The position is to be closed at market (the first reason stays): CLOSING."""
    if not p.flatten_requested:
        p.flatten_requested, p.status = reason, Phase.CLOSING


def flatten_filled(p: Position, attempt: int, qty: Decimal, quote: Decimal) -> None:
    """A market close (attempt `attempt`) filled `qty` for `quote`, counted once."""
    if p.flatten_attempt == attempt:
        p.flatten_qty += qty
        p.flatten_quote += quote
        p.flatten_attempt += 1


def flattened(p: Position) -> None:
    """Nothing more to sell: every leg not done is done by the flatten."""
    for leg in p.legs:
        if leg.status != LegStatus.DONE:
            leg.status, leg.exit_reason = LegStatus.DONE, "flatten"
    p.close_reason = p.close_reason or f"flatten:{p.flatten_requested}"


def wallet_baseline_set(p: Position, base: Decimal) -> None:
    """Margin: the wallet's base net the manual-close watch compares with, set once."""
    if p.wallet_base0 is None:
        p.wallet_base0 = base


def manual_close_booked(p: Position, qty: Decimal, quote: Decimal, f: SymbolFilters) -> None:
    """Book `qty` (worth `quote`) closed by hand on the legs without resting orders, trailing leg first."""
    idle = [lg for lg in reversed(p.legs) if lg.status in (LegStatus.NEW, LegStatus.REPLACING)] or \
           [lg for lg in reversed(p.legs) if lg.status != LegStatus.DONE]
    shares = share_out(idle, qty, quote)
    for leg in p.legs:
        if leg.name in shares:
            leg.filled_qty += shares[leg.name][0]
            leg.filled_quote += shares[leg.name][1]
            leg.exit_reason = "manual"
            if leg_spent(leg, f):
                leg.status = LegStatus.DONE
    if all(lg.status == LegStatus.DONE for lg in p.legs):
        p.close_reason = p.close_reason or "manual"


def closed(st: State, trade_key: str, summary: ClosedTrade, cooldown_until: float,
           messages: list[Message]) -> tuple[State, list[Message]] | None:
    """The trade is over: free the slot, keep its summary, start the cooldown (with the CLOSED event)."""
    if st.position is None or st.position.trade_key != trade_key:
        return None
    st.position, st.last_closed = None, summary
    st.dust = settle(st.dust, summary.dust_delta)
    st.closed_count += 1
    st.cooldown_until = cooldown_until
    return st, messages


def _better(side: str, new: Decimal, old: Decimal) -> bool:
    return new > old if side == "long" else new < old
