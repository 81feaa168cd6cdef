"""Pure rules of the entry phase: when a signal is refused, the pending position, Plan B."""
from __future__ import annotations

from decimal import Decimal

from shared.domain.exit_plan import EntryPlan
from shared.domain.messages import Signal
from shared.domain.order_ids import client_id, trade_key_for
from shared.domain.position import LIVE_STATUSES, Position, State


def refusal(state: State, now: float, halted: bool) -> str | None:
    """Why a new signal may not open a position now, or None when it may."""
    if halted:
        return "halted"
    if state.position is not None and state.position.status in LIVE_STATUSES:
        return f"position_{state.position.status.lower()}"
    if now < state.cooldown_until:
        return f"cooldown ({state.cooldown_until - now:.0f}s left)"
    if now < state.lock_until:
        return f"lock ({state.lock_until - now:.0f}s left)"
    return None


def pending_position(sig: Signal, plan: EntryPlan, symbol: str, entry_mode: str, now: float, wall_now: float) -> Position:
    """The PENDING position for a signal: the intent, with the entry's client id fixed before sending."""
    tk = trade_key_for(sig.key, sig.ts, sig.kind)
    return Position(
        trade_key=tk, signal_key=sig.key, symbol=symbol, side=plan.side, status="PENDING", entry_mode=entry_mode,
        entry_price=plan.entry_price, qty=plan.qty, sl=plan.sl, tp1=plan.tp1, tp2=plan.tp2, r=plan.r,
        signal_price=sig.price, signal_ts=sig.ts, created_at=now, entry_client_id=client_id(tk, "entry", 0),
        entry_sent_at=wall_now,
    )


def planb_decision(side: str, executable: Decimal | None, pos: Position, *, max_dev_r_mult: Decimal,
                   max_dev_usd: Decimal, abort_if_past_tp1: bool, require_price: bool) -> str | None:
    """After a limit entry timed out: None to go to market, else the reason to abort."""
    if executable is None:
        return "planb_no_price" if require_price else None
    dev = executable - pos.entry_price if side == "long" else pos.entry_price - executable
    if abort_if_past_tp1 and ((side == "long" and executable >= pos.tp1) or (side == "short" and executable <= pos.tp1)):
        return f"planb_past_tp1 (price {executable}, tp1 {pos.tp1})"
    limit = max_dev_usd if max_dev_usd > 0 else pos.r * max_dev_r_mult
    if dev > limit:
        return f"planb_price_moved (deviation {dev} > {limit})"
    return None
