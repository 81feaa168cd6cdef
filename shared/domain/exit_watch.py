"""The exit side's watches, pure: a stop the market gapped through, coins closed by hand, the trailing target,
what a refused leg or a market close means. Each takes what the exchange and the market said as plain values in
an `ExitView` and returns typed actions; services/exit_manager reads the inputs and carries the actions out.

Some inputs cost a request (the wallet, the account's own trades, a stop's record asked again) and are read only
when the decision needs them, in the order the decision needs them: a watch then answers with a `Read...` action
naming the input it lacks, the service reads it into the view and asks again. An input that cannot be read ends
the watch with nothing done (the next tick asks again)."""
from __future__ import annotations

from decimal import Decimal
from typing import Protocol, Union

import msgspec

from shared.domain.exit_decide import ExitView, RequestFlatten, trail_mid_fallback, watchdog_fires
from shared.domain.exit_plan import stop_limit_price
from shared.domain.exit_rules import (
    held_qty,
    immediate_reason,
    nearest_stop,
    past_limit,
    trail_candidate,
    trail_fallback,
    trail_move,
)
from shared.domain.holdings import exposure_gap, gap_tolerance, manual_booking, traded_qty, wallet_baseline
from shared.domain.orders import Order
from shared.domain.position import Leg, Position
from shared.domain.symbol import SymbolFilters

_IMMEDIATE = ("would trigger immediately", "would immediately match")
_STOP_TYPES = ("STOP_LOSS_LIMIT", "STOP_LOSS")


# ---- actions ----------------------------------------------------------------------------------------------------

class ReadWallet(msgspec.Struct, frozen=True, tag=True):
    """Read the margin wallet's base net (`view.wallet_net`)."""


class ReadAccount(msgspec.Struct, frozen=True, tag=True):
    """Read the spot account's base balance, free + locked (`view.account_base`)."""


class ReadUncounted(msgspec.Struct, frozen=True, tag=True):
    """Ask the exchange what our orders traded that the legs do not count yet (`view.uncounted`)."""


class ReadForeignFills(msgspec.Struct, frozen=True, tag=True):
    """Read the account's own trades outside our orders, up to `qty` (`view.foreign_qty`, `view.foreign_quote`)."""
    qty: Decimal


class StopResting(msgspec.Struct, frozen=True, tag=True):
    """Cancel the trade's resting orders and count what they filled (`view.resting_stopped`), then measure again."""


class SetWalletBaseline(msgspec.Struct, frozen=True, tag=True):
    """The first wallet read once the legs rest: keep it as the baseline (`transitions.wallet_baseline_set`)."""
    net: Decimal
    baseline: Decimal


class GapUnexplained(msgspec.Struct, frozen=True, tag=True):
    """The holdings moved but no trade of the account outside our orders says so: book nothing, keep the legs."""
    gap: Decimal


class BookManual(msgspec.Struct, frozen=True, tag=True):
    """Book `qty` (worth `quote`) as closed by hand (`transitions.manual_close_booked`); close when nothing is left."""
    gap: Decimal
    qty: Decimal
    quote: Decimal


class GraceReset(msgspec.Struct, frozen=True, tag=True):
    """The market is back on the safe side of the stop's limit (or unknown): the watchdog's grace starts again."""


class GraceStarted(msgspec.Struct, frozen=True, tag=True):
    """The market is first seen past the triggered stop's limit: the grace starts now."""
    at: float


class RecheckStop(msgspec.Struct, frozen=True, tag=True):
    """Ask the exchange again whether the stop still rests unfilled (`view.stop_resting`)."""


class StopFilling(msgspec.Struct, frozen=True, tag=True):
    """Asked again, the stop is no longer resting unfilled: it filled (or is filling), the next learn settles it."""


class StopGapped(msgspec.Struct, frozen=True, tag=True):
    """The triggered stop rests unfilled past its limit beyond the grace: flatten (reason `stop_gapped`)."""
    passed_sec: float


class ReadBook(msgspec.Struct, frozen=True, tag=True):
    """Read the book (`view.book`)."""


class TrailFeedStale(msgspec.Struct, frozen=True, tag=True):
    """AGG_CSV has no bar, or none newer than INVAR_FEED_STALE_SEC: no trailing move (fails closed)."""
    last_bar: int | None


class TrailEval(msgspec.Struct, frozen=True, tag=True):
    """One evaluation of the trailing stop: the candidate, where it came from, and the move (None: stay)."""
    candidate: Decimal | None
    source: str         # swing | mid
    market: Decimal
    move_to: Decimal | None


class StopNearest(msgspec.Struct, frozen=True, tag=True):
    """STOP_IMMEDIATE_ACTION=nearest: set the leg's stop to the closest price that does not trigger now."""
    stop: Decimal
    limit: Decimal


class CountRejection(msgspec.Struct, frozen=True, tag=True):
    """An ordinary refusal: count it; the leg waits EXITS_RETRY_EVERY_SEC (FAILSAFE_FLATTEN decides after)."""


class MarketClose(msgspec.Struct, frozen=True, tag=True):
    """Close `qty` at market."""
    qty: Decimal


class FlattenDust(msgspec.Struct, frozen=True, tag=True):
    """What is left is below the exchange's minimum: nothing to sell (`qty` stays in the account)."""
    qty: Decimal


WatchAction = Union[ReadWallet, ReadAccount, ReadUncounted, ReadForeignFills, StopResting, SetWalletBaseline,
                    GapUnexplained, BookManual, GraceReset, GraceStarted, RecheckStop, StopFilling, StopGapped,
                    ReadBook, TrailFeedStale, TrailEval, StopNearest, CountRejection, RequestFlatten, MarketClose,
                    FlattenDust]


# ---- manual close ---------------------------------------------------------------------------------------------

def manual_close(pos: Position, view: ExitView, fee_rate: Decimal, f: SymbolFilters,
                 margin: bool) -> list[WatchAction]:
    """Coins of the position that left the account (a long) or came back to it (a short) outside our orders: the
    next input to read, or what to do (baseline, nothing, unexplained, stop the resting orders, book)."""
    return _margin_gap(pos, view, fee_rate, f) if margin else _spot_gap(pos, view, fee_rate, f)


def _margin_gap(pos: Position, view: ExitView, fee: Decimal, f: SymbolFilters) -> list[WatchAction]:
    """Margin: the wallet's base net against the baseline; booked only as far as the account's own trades outside
    our orders prove it, measured again once our resting orders are stopped and counted."""
    if view.resting_stopped:
        gap = exposure_gap(pos, pos.wallet_base0, view.wallet_net, fee) if view.wallet_net is not None else Decimal(0)
        return _book(gap, traded_qty(pos.side, gap, fee), view, f)
    if view.wallet_net is None:
        return [ReadWallet()]
    if pos.wallet_base0 is None:
        return [SetWalletBaseline(view.wallet_net, wallet_baseline(pos, view.wallet_net, fee))]
    gap = exposure_gap(pos, pos.wallet_base0, view.wallet_net, fee)
    tol = gap_tolerance(pos, fee, f.min_qty)
    if gap < tol:
        return []
    if view.uncounted is None:
        return [ReadUncounted()]
    if gap - view.uncounted < tol:
        return []
    traded = traded_qty(pos.side, gap, fee)
    if view.foreign_qty is None:
        return [ReadForeignFills(traded)]
    if manual_booking(traded, view.foreign_qty, f.step_size, f.min_qty) <= 0:
        return [GapUnexplained(gap)]
    return [StopResting()]


def _spot_gap(pos: Position, view: ExitView, fee: Decimal, f: SymbolFilters) -> list[WatchAction]:
    """Spot (after -2010): what a long holds minus what the account has and our uncounted orders traded; a spot
    short does not exist."""
    if pos.side != "long":
        return []
    if view.account_base is None:
        return [ReadAccount()]
    if view.uncounted is None:
        return [ReadUncounted()]
    gap = held_qty(pos, fee, f.step_size) - view.uncounted - view.account_base
    if gap < f.min_qty:
        return []
    if view.foreign_qty is None:
        return [ReadForeignFills(gap)]
    book = _book(gap, gap, view, f)
    return book or [GapUnexplained(gap)]


def _book(gap: Decimal, traded: Decimal, view: ExitView, f: SymbolFilters) -> list[WatchAction]:
    fq, fquote = view.foreign_qty or Decimal(0), view.foreign_quote or Decimal(0)
    qty = manual_booking(traded, fq, f.step_size, f.min_qty)
    if qty <= 0:
        return []
    return [BookManual(gap, qty, fquote * qty / fq)]


# ---- a stop gapped through --------------------------------------------------------------------------------------

def gap_watched(stop: Order) -> bool:
    """Only a triggered (working) stop order can rest unfilled past its limit."""
    return stop.is_working and stop.type in _STOP_TYPES


def stop_gap(side: str, stop: Order, view: ExitView, since: float | None, now: float, grace_sec: float,
             fresh: bool) -> list[WatchAction]:
    """SL_WATCHDOG: a triggered stop-limit whose limit the market (`view.executable`) has gapped through rests
    unfilled. The grace (`since`: when it was first seen passed, stack clock) starts at the first sighting; once
    it is over, a stop not from the open-orders read just made (`fresh`) is asked again (`view.stop_resting`), and
    only a stop still resting unfilled is flattened."""
    if not gap_watched(stop):
        return []
    px = view.executable
    if px is None or not past_limit(side, px, stop.price):
        return [GraceReset()]
    out: list[WatchAction] = []
    if since is None:
        since = now
        out.append(GraceStarted(now))
    if not watchdog_fires(since, now, grace_sec):
        return out
    if not fresh:
        if view.stop_resting is None:
            return [*out, RecheckStop()]
        if not view.stop_resting:
            return [*out, StopFilling()]
    return [*out, StopGapped(now - since)]


# ---- the trailing target -----------------------------------------------------------------------------------------

class TrailSettings(Protocol):
    """The settings `trail_target` reads (shared/config.py's Config has them all)."""
    INVAR_FEED_STALE_SEC: float
    TRAIL_SWING_LR: int
    TRAIL_SWING_BUFFER_USD: Decimal
    TRAIL_SOURCE: str
    TRAIL_STEP_USD: Decimal
    TRAIL_CONFIRM_BUFFER_USD: Decimal


def trail_target(pos: Position, trail: Leg, view: ExitView, settings: TrailSettings, tick: Decimal, now: float,
                 activation: bool) -> list[WatchAction]:
    """§10: the trailing stop's next place from the feed's swings (`view.bars`, fresh enough) and the book
    (`view.book`): a swing beyond the buffer, or at the activation (and with TRAIL_SOURCE=BINANCE) the mid ∓ the
    buffer; `trail_move` says whether it moves (never looser, TRAIL_STEP_USD but at the activation)."""
    bars = view.bars or ()
    if not bars or now - (bars[-1].ts + 60) > settings.INVAR_FEED_STALE_SEC:
        return [TrailFeedStale(bars[-1].ts if bars else None)]
    if view.book is None:
        return [ReadBook()]
    bid, ask = view.book
    cand = trail_candidate(pos.side, bars, settings.TRAIL_SWING_LR, settings.TRAIL_SWING_BUFFER_USD, tick,
                           pos.k_entry)
    px = bid if pos.side == "long" else ask
    source = "swing"
    if cand is None and trail_mid_fallback(settings.TRAIL_SOURCE, activation):
        cand, source = trail_fallback(pos.side, bid, ask, settings.TRAIL_SWING_BUFFER_USD, tick), "mid"
    new = trail_move(pos.side, trail.stop_price, cand,
                     step_usd=Decimal(0) if activation else settings.TRAIL_STEP_USD,
                     last_close=bars[-1].close * pos.k_entry, confirm_buffer=settings.TRAIL_CONFIRM_BUFFER_USD,
                     market=px)
    return [TrailEval(cand, source, px, new)]


# ---- a refused leg, a market close --------------------------------------------------------------------------------

def refusal_reason(side: str, leg: Leg, view: ExitView, msg: str) -> str:
    """stop_immediate / tp_immediate when a leg was refused because the market (`view.executable`) is already
    through one of its prices (Binance words it differently per endpoint: the OCO says 'relationship of the
    prices'), else ""."""
    why = immediate_reason(side, leg, view.executable) if view.executable is not None else ""
    if not why and any(s in msg.lower() for s in _IMMEDIATE):
        why = "stop_immediate" if "trigger" in msg.lower() else "tp_immediate"
    return why


def nearest_move(side: str, leg: Leg, view: ExitView, tick: Decimal, gap_ticks: int) -> StopNearest | None:
    """STOP_IMMEDIATE_ACTION=nearest: the closest stop on the losing side of the market (`view.executable`) that
    does not trigger now; None (flatten instead) when the market is unknown or the stop is already there."""
    if view.executable is None:
        return None
    new = nearest_stop(side, view.executable, tick)
    if new <= 0 or new == leg.stop_price:
        return None
    return StopNearest(new, stop_limit_price(side, new, gap_ticks, tick))


def leg_refused(why: str, nearest: StopNearest | None, immediate_action: str) -> WatchAction:
    """What a refused leg (not for coins gone) means: a stop that would trigger at once goes to the nearest price
    (STOP_IMMEDIATE_ACTION=nearest) or flattens, a take-profit that would match at once flattens, anything else is
    counted towards the retry and the failsafe."""
    if why == "stop_immediate" and immediate_action == "nearest" and nearest is not None:
        return nearest
    if why:
        return RequestFlatten(why)
    return CountRejection()


def market_close(pos: Position, fee_rate: Decimal, f: SymbolFilters) -> MarketClose | FlattenDust:
    """Flatten: what is still held, in whole steps; below the exchange's minimum quantity or notional it is dust
    left in the account."""
    rest = (held_qty(pos, fee_rate, f.step_size) // f.step_size) * f.step_size
    if rest < f.min_qty or rest * pos.avg_entry < f.min_notional:
        return FlattenDust(rest)
    return MarketClose(rest)
