"""Entry price, sizing, stop-loss and take-profits, computed up front and checked. Pure Decimal math."""
from __future__ import annotations

from decimal import Decimal
from typing import Sequence

import msgspec

from shared.domain.risk_math import ceil_to_step, floor_to_step
from shared.domain.symbol import SymbolFilters


class PlanError(ValueError):
    """The plan is invalid; the message is the reason recorded with the aborted signal."""


class EntryPlan(msgspec.Struct, frozen=True, kw_only=True):
    """Everything decided before the entry order is sent."""
    side: str
    entry_price: Decimal
    qty: Decimal
    sl: Decimal
    tp1: Decimal
    tp2: Decimal
    r: Decimal
    sl_source: str   # swing | pct


def entry_price(side: str, signal_price: Decimal, offset: Decimal, tick: Decimal) -> Decimal:
    """Signal price plus the offset, rounded away from the signal so it stays at least one tick on the
    marketable side (above for a long, below for a short)."""
    if side == "long":
        return max(ceil_to_step(signal_price + offset, tick), ceil_to_step(signal_price, tick) + tick)
    return min(floor_to_step(signal_price - offset, tick), floor_to_step(signal_price, tick) - tick)


def size_qty(qty_usd: Decimal, price: Decimal, f: SymbolFilters) -> Decimal:
    """Quantity for `qty_usd` at `price`, floored to the step; PlanError below min qty or min notional."""
    qty = floor_to_step(qty_usd / price, f.step_size)
    if qty < f.min_qty or qty <= 0:
        raise PlanError(f"qty {qty} below min qty {f.min_qty} (QTY_USD={qty_usd} at {price})")
    if qty * price < f.min_notional:
        raise PlanError(f"notional {qty * price} below min notional {f.min_notional}")
    if f.max_qty > 0 and qty > f.max_qty:
        raise PlanError(f"qty {qty} above max qty {f.max_qty}")
    return qty


def stop_loss(side: str, entry: Decimal, swing_extreme: Decimal | None, sl_pct: Decimal, tick: Decimal) -> tuple[Decimal, str]:
    """Swing-based stop (lowest low / highest high of the last SWING_MINS bars), else SL_PCT from entry.
    The swing is used only when it lies at least one tick beyond the entry."""
    if side == "long":
        if swing_extreme is not None and floor_to_step(swing_extreme, tick) <= entry - tick:
            return floor_to_step(swing_extreme, tick), "swing"
        return floor_to_step(entry * (1 - sl_pct), tick), "pct"
    if swing_extreme is not None and ceil_to_step(swing_extreme, tick) >= entry + tick:
        return ceil_to_step(swing_extreme, tick), "swing"
    return ceil_to_step(entry * (1 + sl_pct), tick), "pct"


def take_profits(side: str, entry: Decimal, r: Decimal, r_list: Sequence[Decimal], tick: Decimal) -> tuple[Decimal, Decimal]:
    """TP1 and TP2 at TP_R_LIST multiples of R, rounded toward the entry (conservative)."""
    if side == "long":
        return floor_to_step(entry + r * r_list[0], tick), floor_to_step(entry + r * r_list[1], tick)
    return ceil_to_step(entry - r * r_list[0], tick), ceil_to_step(entry - r * r_list[1], tick)


def check_order(side: str, sl: Decimal, entry: Decimal, tp1: Decimal, tp2: Decimal, tick: Decimal) -> None:
    """PlanError unless sl < entry < tp1 < tp2 (long; mirrored for short) with at least a tick between each."""
    seq = (sl, entry, tp1, tp2) if side == "long" else (tp2, tp1, entry, sl)
    names = ("sl", "entry", "tp1", "tp2") if side == "long" else ("tp2", "tp1", "entry", "sl")
    for (a, na), (b, nb) in zip(zip(seq, names), zip(seq[1:], names[1:])):
        if b - a < tick:
            raise PlanError(f"invalid exit plan for {side}: {na}={a} must be at least one tick below {nb}={b}")
    if sl <= 0 or tp2 <= 0:
        raise PlanError(f"invalid exit plan: non-positive price (sl={sl}, tp2={tp2})")


def build_plan(side: str, signal_price: Decimal, f: SymbolFilters, *, offset: Decimal, qty_usd: Decimal,
               sl_pct: Decimal, r_list: Sequence[Decimal], swing_extreme: Decimal | None) -> EntryPlan:
    """The whole entry plan for a signal; PlanError with the reason when any part is invalid."""
    if side not in ("long", "short"):
        raise PlanError(f"unknown side {side!r}")
    entry = entry_price(side, signal_price, offset, f.tick_size)
    qty = size_qty(qty_usd, entry, f)
    sl, src = stop_loss(side, entry, swing_extreme, sl_pct, f.tick_size)
    r = abs(entry - sl)
    tp1, tp2 = take_profits(side, entry, r, r_list, f.tick_size)
    check_order(side, sl, entry, tp1, tp2, f.tick_size)
    return EntryPlan(side=side, entry_price=entry, qty=qty, sl=sl, tp1=tp1, tp2=tp2, r=r, sl_source=src)


def stop_limit_price(side: str, stop: Decimal, gap_ticks: int, tick: Decimal) -> Decimal:
    """Limit price of a STOP_LOSS_LIMIT: SL_LIMIT_GAP_TICKS beyond the stop, on the side that fills."""
    return stop - tick * gap_ticks if side == "long" else stop + tick * gap_ticks
