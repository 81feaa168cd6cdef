"""The exit side's decisions, pure: what to do next with a filled position, as typed actions.

`decide(pos, view, settings, now)` looks at the position (the state document), what the exchange and the market
say (`ExitView`) and the settings, and returns the actions the exit manager carries out, in order. Each action is
carried out idempotently by services/exit_manager (deterministic client ids, adopt before place, ids written to the
state before the exchange call) and each of its results is written by a named transition
(shared/domain/transitions.py).

Where later rules go: a leg order the exchange EXPIRED (or EXPIRED_IN_MATCH) is counted by `read_attempt` and the
leg goes back to NEW (`transitions.leg_filled`), so `decide` places it again (PlaceLeg); a rule that flattens such a
leg instead (`expired_stop`), or once its re-placement is refused past SL_WATCHDOG_RETRY_SEC (`stop_lost_refused`),
the stop watchdog's grace and retry (`watchdog_fires`, `flatten_retry_sec`) are decided here and carried out by the
learning and flatten steps. The dust needs no action of its own: once the legs' stops rest, the ledger's whole steps
ride on the resting trailing stop (shared/domain/dust.py, `carry_due`).
"""
from __future__ import annotations

from decimal import Decimal
from typing import Protocol, Union

import msgspec

from shared.domain.bars import Bar
from shared.domain.dust import carry_due
from shared.domain.exit_rules import be_due, be_price, better
from shared.domain.position import LegStatus, Phase, Position, net_qty


class PlanLegs(msgspec.Struct, frozen=True, tag=True):
    """Plan the three legs of a position that has none."""


class PlaceLeg(msgspec.Struct, frozen=True, tag=True):
    """Place (or adopt) the current attempt of a NEW leg."""
    leg: str


class FinishMove(msgspec.Struct, frozen=True, tag=True):
    """Carry out a recorded stop move (REPLACING): adopt the new orders, or cancel the old ones and place."""
    leg: str


class MoveStop(msgspec.Struct, frozen=True, tag=True):
    """Move a resting leg's stop in the position's favour (never looser)."""
    leg: str
    stop: Decimal
    why: str            # break_even | trailing


class SettleBreakEven(msgspec.Struct, frozen=True, tag=True):
    """After the break-even moves: done when every stop is there, else count a failed round."""
    stop: Decimal


class StartTrailing(msgspec.Struct, frozen=True, tag=True):
    """TP2 took profit: the last leg trails from now."""


class EvaluateTrail(msgspec.Struct, frozen=True, tag=True):
    """Read the feed and the book and move the trailing stop if a swing allows it (`trail_target`)."""
    activation: bool    # the first evaluation places without the TRAIL_STEP_USD test


class Flatten(msgspec.Struct, frozen=True, tag=True):
    """Close the position at market (cancel everything, count, sell or buy back the rest)."""
    reason: str


class RequestFlatten(msgspec.Struct, frozen=True, tag=True):
    """Record that the position is to be flattened (the next tick carries it out)."""
    reason: str


class Close(msgspec.Struct, frozen=True, tag=True):
    """Every leg is done: verify nothing is open, repay a manual borrow, free the slot, start the cooldown."""


Action = Union[PlanLegs, PlaceLeg, FinishMove, MoveStop, SettleBreakEven, StartTrailing, EvaluateTrail, Flatten,
               RequestFlatten, Close]


class ExitView(msgspec.Struct, frozen=True):
    """What the exchange and the market say, as far as the decision needs it (None: unknown / not read). The
    watches of shared/domain/exit_watch.py read the fields after `flatten_wait`."""
    executable: Decimal | None = None   # the price a market exit would get now (bid for a long, ask for a short)
    flatten_wait: bool = False          # a refused market close waits EXITS_RETRY_EVERY_SEC
    book: tuple[Decimal, Decimal] | None = None     # SYMBOL's (bid, ask)
    bars: tuple[Bar, ...] | None = None             # AGG_CSV's last bars (the trailing's lookback)
    wallet_net: Decimal | None = None   # margin: the wallet's base net (free + borrowed, signed)
    account_base: Decimal | None = None  # spot: the account's base balance, free + locked
    uncounted: Decimal | None = None    # what our orders traded that the legs do not count yet
    foreign_qty: Decimal | None = None  # the account's own trades outside our orders: base quantity ...
    foreign_quote: Decimal | None = None  # ... and its quote
    resting_stopped: bool = False       # the trade's resting orders are cancelled and their fills counted
    stop_resting: bool | None = None    # a triggered stop, asked again: still resting unfilled


class ExitSettings(Protocol):
    """The settings `decide` reads (shared/config.py's Config has them all)."""
    TRAIL_ACTIVATE_AFTER_TP2: bool
    TRAIL_UPDATE_EVERY_SEC: float


def expired_stop(side: str, stop: Decimal, market: Decimal | None) -> str:
    """A leg whose stop the exchange EXPIRED (price range rule, self-trade prevention) has no stop: "replace" it
    (the leg goes back to NEW and is placed again), or "flatten" when the market is already at or past the stop
    (a new stop would trigger at once; the old one should have sold). With the market unknown, "replace": the
    placement itself refuses a stop that would trigger and takes the STOP_IMMEDIATE_ACTION path."""
    if market is not None and not better(side, market, stop):
        return "flatten"
    return "replace"


def watchdog_fires(passed_since: float, now: float, grace_sec: float) -> bool:
    """SL_WATCHDOG_GRACE_SEC: a stop the market passed without filling is closed at market once it has stayed
    passed for the grace (stack clock; 0 or less fires at once, as the original)."""
    return now - passed_since >= grace_sec


def flatten_retry_sec(reason: str, exits_retry_sec: float, watchdog_retry_sec: float) -> float:
    """The wait after a refused market close: SL_WATCHDOG_RETRY_SEC for the stop watchdog's close (a stop passed
    without filling), EXITS_RETRY_EVERY_SEC for the others."""
    return watchdog_retry_sec if reason == "stop_gapped" else exits_retry_sec


def refused_retry_sec(stop_lost_at: float, exits_retry_sec: float, watchdog_retry_sec: float) -> float:
    """The wait after the exchange refused a leg's placement: SL_WATCHDOG_RETRY_SEC for a leg whose stop the
    exchange expired (it holds coins without a stop meanwhile), EXITS_RETRY_EVERY_SEC for the others."""
    return watchdog_retry_sec if stop_lost_at > 0 else exits_retry_sec


def stop_lost_refused(stop_lost_at: float, refusals: int, now: float, watchdog_retry_sec: float,
                      max_tries: int) -> bool:
    """A leg whose stop the exchange expired (`stop_lost_at`, stack time) and whose re-placement the exchange
    refused (`refusals` times since, this one included): flatten it (True) once it has been without a stop for
    SL_WATCHDOG_RETRY_SEC or was refused FAILSAFE_EXITS_MAX_TRIES times, whatever FAILSAFE_FLATTEN says (that
    failsafe, off by default, may wait forever; a leg that had a stop and lost it must not). Else it is tried again
    after SL_WATCHDOG_RETRY_SEC (`refused_retry_sec`)."""
    if stop_lost_at <= 0 or refusals <= 0:
        return False
    return refusals >= max_tries or now - stop_lost_at >= watchdog_retry_sec


def trail_mid_fallback(trail_source: str, activation: bool) -> bool:
    """Whether the book's mid stands in for a swing the feed does not give (TRAIL_SOURCE): at the trailing's
    activation whatever the value, as the original; with BINANCE also at every later evaluation (the original's
    maintenance falls back to the mid for any value but AGG)."""
    return activation or trail_source != "AGG"


def decide(pos: Position, view: ExitView, settings: ExitSettings, tick: Decimal, now: float) -> list[Action]:
    """The next actions for a filled position, in the order they are carried out: its life (`lifecycle`), then
    the stop moves in its favour (`favour`; the exit manager decides those again on the position as it is after
    the placements, since a move needs a resting stop)."""
    acts = lifecycle(pos, view, now)
    if any(isinstance(a, (PlanLegs, Flatten, Close)) for a in acts):
        return acts
    return acts + favour(pos, view, settings, tick, now)


def lifecycle(pos: Position, view: ExitView, now: float) -> list[Action]:
    """Flatten, plan the legs, close, or place / finish moving the legs that are not resting."""
    if pos.flatten_requested:
        return [] if view.flatten_wait else [Flatten(pos.flatten_requested)]
    if not pos.legs and pos.exit_qty <= 0 and net_qty(pos) > 0:
        return [PlanLegs()]   # planned legs may be none at all (nothing tradeable): then it closes below
    if all(lg.status == LegStatus.DONE for lg in pos.legs):
        return [Close()]
    waiting = now < pos.exits_next_at
    out: list[Action] = []
    for lg in pos.legs:
        if lg.errors and waiting:
            continue  # a refused leg waits EXITS_RETRY_EVERY_SEC; the others are placed at once
        if lg.status == LegStatus.NEW:
            out.append(PlaceLeg(lg.name))
        elif lg.status == LegStatus.REPLACING:
            out.append(FinishMove(lg.name))
    return out


def waits_for_market(pos: Position, trade_mode: str) -> bool:
    """Nothing for the exit side to do until the market trades at one of its resting orders: every leg rests or
    is done without a refusal, no flatten, no break-even due, not trailing (its evaluations run on market time),
    no dust carry to decide. The replay driver plays such a stretch in one call, up to the first point that
    touches an order."""
    if pos.status != Phase.OPEN_FILLED or pos.flatten_requested or not pos.legs or pos.trailing:
        return False
    if carry_due(pos, trade_mode) or any(lg.stop_lost_at for lg in pos.legs):
        return False
    if any(lg.status not in (LegStatus.PLACED, LegStatus.DONE) or lg.errors for lg in pos.legs):
        return False
    if all(lg.status == LegStatus.DONE for lg in pos.legs) or any(
            lg.name == "tp2" and lg.status == LegStatus.DONE for lg in pos.legs):
        return False  # closing, or the trailing about to start
    return pos.be_done or not be_due(pos)


def favour(pos: Position, view: ExitView, settings: ExitSettings, tick: Decimal, now: float) -> list[Action]:
    """The stop moves in the position's favour: break-even after TP1, then the trailing of the last leg."""
    return break_even(pos, view, tick, now) + trailing(pos, settings, now)


def break_even_pending(pos: Position, tick: Decimal, now: float) -> bool:
    """Break-even is due and some resting stop is still behind it (then the market price is needed)."""
    if pos.be_done or not be_due(pos) or now < pos.be_next_at:
        return False
    target = be_price(pos, tick)
    return any(lg.status == LegStatus.PLACED and better(pos.side, target, lg.stop_price) for lg in pos.legs)


def break_even(pos: Position, view: ExitView, tick: Decimal, now: float) -> list[Action]:
    """§9: after TP1 took profit, every resting stop moves to the average entry (rounded once to the tick); when the
    market is already through it, flatten; with the market unknown, wait."""
    if pos.be_done or not be_due(pos) or now < pos.be_next_at:
        return []
    target = be_price(pos, tick)
    todo = [lg.name for lg in pos.legs if lg.status == LegStatus.PLACED and better(pos.side, target, lg.stop_price)]
    if todo:
        if view.executable is None:
            return []
        if not better(pos.side, view.executable, target):
            return [RequestFlatten("be_immediate")]
    return [*(MoveStop(name, target, "break_even") for name in todo), SettleBreakEven(target)]


def break_even_reached(pos: Position, stop: Decimal) -> bool:
    """Every leg is done or has its stop at (or beyond) the break-even stop."""
    return all(lg.status == LegStatus.DONE or not better(pos.side, stop, lg.stop_price) for lg in pos.legs)


def trailing(pos: Position, settings: ExitSettings, now: float) -> list[Action]:
    """§10: the trailing leg trails once TP2 took profit (TRAIL_ACTIVATE_AFTER_TP2), evaluated every
    TRAIL_UPDATE_EVERY_SEC of market time."""
    trail = next((lg for lg in pos.legs if lg.name == "trail"), None)
    if trail is None or trail.status != LegStatus.PLACED or not settings.TRAIL_ACTIVATE_AFTER_TP2:
        return []
    out: list[Action] = []
    if not pos.trailing:
        if not any(lg.name == "tp2" and lg.status == LegStatus.DONE and lg.exit_reason == "tp" for lg in pos.legs):
            return []
        out.append(StartTrailing())
    if now - pos.trail_last_at < settings.TRAIL_UPDATE_EVERY_SEC:
        return out
    return [*out, EvaluateTrail(activation=pos.trail_last_at == 0)]
