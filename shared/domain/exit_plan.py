"""Entry price, sizing, stop-loss and take-profits, computed up front and checked: the original's rules
(../shared/reference/original-plan-rules.md, section numbers below) in Decimal. Pure, no I/O."""
from __future__ import annotations

from decimal import Decimal
from typing import Sequence

import msgspec

from shared.domain.legs import leg_floor_prices, split_qty_3legs
from shared.domain.risk_math import ceil_to_step, floor_to_step
from shared.domain.symbol import SymbolFilters

ONE = Decimal(1)


class PlanError(ValueError):
    """The plan is invalid; the message is the reason recorded with the aborted signal."""


class EntryPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Everything decided before the entry order is sent, in SYMBOL's prices (after the re-pricing by `k`)."""
    side: str
    entry_price: Decimal
    qty: Decimal
    sl: Decimal
    tp1: Decimal
    tp2: Decimal
    r: Decimal
    sl_source: str   # swing | pct | tick (the one-tick clamp)
    k: Decimal = ONE                 # mid(SYMBOL) / mid(feed symbol); 1 when both have the same quote
    feed_entry: Decimal = Decimal(0)   # the plan in the feed's prices, before the re-pricing (the audit)
    feed_sl: Decimal = Decimal(0)
    feed_tp1: Decimal = Decimal(0)
    feed_tp2: Decimal = Decimal(0)


class FeedPlan(msgspec.Struct, frozen=True):
    """§3, §1, §4a: entry, stop and take-profits in the feed's prices."""
    entry: Decimal
    sl: Decimal
    tp1: Decimal
    tp2: Decimal
    sl_source: str


def entry_price(side: str, signal_price: Decimal, offset: Decimal, tick: Decimal) -> Decimal:
    """§3: the close plus ENTRY_OFFSET_USD (at least one tick beyond it), rounded toward the close."""
    if side == "long":
        return floor_to_step(max(signal_price + offset, signal_price + tick), tick)
    return ceil_to_step(min(signal_price - offset, signal_price - tick), tick)


def size_qty(qty_usd: Decimal, price: Decimal, f: SymbolFilters) -> Decimal:
    """§6: quantity for `qty_usd` at `price`, floored to the step; PlanError below min qty or min notional."""
    qty = floor_to_step(qty_usd / price, f.step_size)
    if qty < f.min_qty or qty <= 0:
        raise PlanError(f"qty {qty} below min qty {f.min_qty} (QTY_USD={qty_usd} at {price})")
    if qty * price < f.min_notional:
        raise PlanError(f"notional {qty * price} below min notional {f.min_notional}")
    if f.max_qty > 0 and qty > f.max_qty:
        raise PlanError(f"qty {qty} above max qty {f.max_qty}")
    return qty


def stop_loss(side: str, entry: Decimal, swing_extreme: Decimal | None, sl_pct: Decimal,
              tick: Decimal) -> tuple[Decimal, str]:
    """§1: the FARTHER of the SL_PCT stop and the window's swing extreme, at least one tick beyond the entry,
    rounded once, away from the entry. A swing on the wrong side of the entry (or none) leaves the SL_PCT stop."""
    if side == "long":
        pct = entry * (1 - sl_pct)
        sl, src = (swing_extreme, "swing") if swing_extreme is not None and swing_extreme < pct else (pct, "pct")
        if sl > entry - tick:
            sl, src = entry - tick, "tick"
        return floor_to_step(sl, tick), src
    pct = entry * (1 + sl_pct)
    sl, src = (swing_extreme, "swing") if swing_extreme is not None and swing_extreme > pct else (pct, "pct")
    if sl < entry + tick:
        sl, src = entry + tick, "tick"
    return ceil_to_step(sl, tick), src


def take_profits(side: str, entry: Decimal, r: Decimal, r_list: Sequence[Decimal],
                 tick: Decimal) -> tuple[Decimal, Decimal]:
    """§4a: TP1 and TP2 at the first two TP_R_LIST multiples of R, rounded toward the entry (exact Decimal, so
    never the tick short that the original's doubles give)."""
    if len(r_list) < 2:
        raise PlanError(f"tps_not_ready: TP_R_LIST needs two multiples, got {len(r_list)}")
    if r <= 0:
        raise PlanError("tps_not_ready: R is zero")
    if side == "long":
        return floor_to_step(entry + r * r_list[0], tick), floor_to_step(entry + r * r_list[1], tick)
    return ceil_to_step(entry - r * r_list[0], tick), ceil_to_step(entry - r * r_list[1], tick)


def feed_plan(side: str, signal_price: Decimal, swing_extreme: Decimal | None, *, offset: Decimal,
              sl_pct: Decimal, r_list: Sequence[Decimal], tick: Decimal) -> FeedPlan:
    """§3, §1 and §4a in the feed's prices, in the original's order."""
    entry = entry_price(side, signal_price, offset, tick)
    sl, src = stop_loss(side, entry, swing_extreme, sl_pct, tick)
    tp1, tp2 = take_profits(side, entry, abs(entry - sl), r_list, tick)
    return FeedPlan(entry, sl, tp1, tp2, src)


def reprice(side: str, plan: FeedPlan, signal_price: Decimal, k: Decimal, tick: Decimal) -> FeedPlan:
    """§5: the feed plan in SYMBOL's prices (x k), each re-rounded in its own direction; the entry stays at least
    one tick beyond the re-priced close, at every k: at k = 1 too, where a close finer than the tick can leave
    §3's entry less than a tick from it (`plan` itself when nothing changes)."""
    if side == "long":
        rnd = floor_to_step
        entry = rnd(plan.entry * k, tick)
        guard = signal_price * k + tick
        if entry < guard:
            entry = ceil_to_step(guard, tick)
    else:
        rnd = ceil_to_step
        entry = rnd(plan.entry * k, tick)
        guard = signal_price * k - tick
        if entry > guard:
            entry = floor_to_step(guard, tick)
    out = FeedPlan(entry, rnd(plan.sl * k, tick), rnd(plan.tp1 * k, tick), rnd(plan.tp2 * k, tick), plan.sl_source)
    return plan if out == plan else out


def check_order(side: str, sl: Decimal, entry: Decimal, tp1: Decimal, tp2: Decimal, tick: Decimal) -> None:
    """§4b ordering: long sl < entry < tp1 <= tp2, short mirrored (TP1 may equal TP2), prices positive."""
    if min(sl, entry, tp1, tp2) <= 0:
        raise PlanError(f"invalid exit plan: non-positive price (sl={sl}, entry={entry}, tp1={tp1}, tp2={tp2})")
    sign = 1 if side == "long" else -1
    if not (sign * (entry - sl) >= tick and sign * (tp1 - entry) >= tick and sign * (tp2 - tp1) >= 0):
        rule = "sl < entry < tp1 <= tp2" if side == "long" else "sl > entry > tp1 >= tp2"
        raise PlanError(f"invalid exit plan for {side}: needs {rule} (sl={sl}, entry={entry}, tp1={tp1}, tp2={tp2})")


def stop_limit_price(side: str, stop: Decimal, gap_ticks: int, tick: Decimal) -> Decimal:
    """§8: limit of a STOP_LOSS_LIMIT, max(1, SL_LIMIT_GAP_TICKS) ticks beyond the stop on the side that fills."""
    gap = tick * max(1, gap_ticks)
    return stop - gap if side == "long" else stop + gap


def round_trip_fees(entry: Decimal, tp1: Decimal, qty: Decimal, fee_rate: Decimal) -> tuple[Decimal, Decimal]:
    """(TP1 gain, round-trip commission) of the whole quantity: the entry and an exit at TP1, each at `fee_rate`."""
    return abs(tp1 - entry) * qty, fee_rate * (entry + tp1) * qty


def build_plan(side: str, signal_price: Decimal, f: SymbolFilters, *, offset: Decimal, qty_usd: Decimal,
               sl_pct: Decimal, r_list: Sequence[Decimal], swing_extreme: Decimal | None,
               k: Decimal = ONE, gap_ticks: int = 2) -> EntryPlan:
    """The whole entry plan for a signal (feed prices -> SYMBOL's by k -> sized), checked before any money is
    committed: ordering, quantity, and every exit order's notional at its own price; PlanError says why not."""
    if side not in ("long", "short"):
        raise PlanError(f"unknown side {side!r}")
    fp = feed_plan(side, signal_price, swing_extreme, offset=offset, sl_pct=sl_pct, r_list=r_list, tick=f.tick_size)
    sp = reprice(side, fp, signal_price, k, f.tick_size)
    check_order(side, sp.sl, sp.entry, sp.tp1, sp.tp2, f.tick_size)
    qty = size_qty(qty_usd, sp.entry, f)
    check_exit_notional(side, qty, sp, f, gap_ticks)
    return EntryPlan(side=side, entry_price=sp.entry, qty=qty, sl=sp.sl, tp1=sp.tp1, tp2=sp.tp2,
                     r=abs(sp.entry - sp.sl), sl_source=fp.sl_source, k=k, feed_entry=fp.entry, feed_sl=fp.sl,
                     feed_tp1=fp.tp1, feed_tp2=fp.tp2)


def check_exit_notional(side: str, qty: Decimal, plan: FeedPlan, f: SymbolFilters, gap_ticks: int) -> None:
    """PlanError unless the three legs (degraded as the split allows) each pass min qty and min notional at every
    price their orders rest at: the take-profit, the stop's limit (and, for the runner, TP2's level)."""
    limit = stop_limit_price(side, plan.sl, gap_ticks, f.tick_size)
    floors = leg_floor_prices(plan.tp1, plan.tp2, limit)
    legs = split_qty_3legs(qty, f.step_size, f.min_qty, f.min_notional, floors)
    for name, q, p in zip(("tp1", "tp2", "trail"), legs, floors):
        if q > 0 and (q < f.min_qty or q * p < f.min_notional):
            raise PlanError(f"exit order {name} of {q} at {p} is below the exchange's minimum "
                            f"(min qty {f.min_qty}, min notional {f.min_notional})")
