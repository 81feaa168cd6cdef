"""Pure rules of the entry phase: when a signal is refused, the pending position, the entry order, Plan B,
the manual margin borrow, and what start-up reconciliation makes of entry orders the state does not know."""
from __future__ import annotations

from collections.abc import Iterable, Sequence
from decimal import Decimal

import msgspec

from shared.domain.exit_plan import (
    EntryPlan,
    PlanError,
    check_order,
    stop_loss,
    take_profits,
)
from shared.domain.messages import Signal
from shared.domain.order_ids import LEG_CODES, client_id, trade_key_for, trade_key_of
from shared.domain.order_updates import OrderUpdate
from shared.domain.orders import Fill, Order, order_is_open
from shared.domain.position import LIVE_STATUSES, Phase, Position, State
from shared.domain.risk_math import ceil_to_step, floor_to_step
from shared.domain.symbol import SymbolFilters

ENTRY_CODE = LEG_CODES["entry"]


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


def side_refusal(kind: str, trade_mode: str) -> str | None:
    """A short needs borrowed coins: only margin can sell what it does not hold."""
    if kind == "short" and trade_mode != "margin":
        return f"short_needs_margin (TRADE_MODE={trade_mode})"
    return None


def pending_position(sig: Signal, plan: EntryPlan, symbol: str, entry_mode: str, now: float, wall_now: float) -> Position:
    """The PENDING position for a signal: the intent, with the entry's client id fixed before sending."""
    tk = trade_key_for(sig.key, sig.ts, sig.kind)
    return Position(
        trade_key=tk, signal_key=sig.key, symbol=symbol, side=plan.side, status=Phase.PENDING, entry_mode=entry_mode,
        entry_price=plan.entry_price, qty=plan.qty, sl=plan.sl, tp1=plan.tp1, tp2=plan.tp2, r=plan.r,
        signal_price=sig.price, signal_ts=sig.ts, created_at=now, entry_client_id=client_id(tk, "entry", 0),
        entry_sent_at=wall_now, k_entry=plan.k,
    )


def order_side(side: str) -> str:
    """The exchange side that opens a position of `side`."""
    return "BUY" if side == "long" else "SELL"


def entry_order_args(pos: Position) -> dict:
    """The entry order for the current attempt: the first is a GTC LIMIT at the planned price unless the mode
    is MARKET_ONLY; a later attempt (Plan B) is a MARKET order for what is still missing."""
    remaining = pos.qty - pos.filled_qty
    if pos.entry_mode == "MARKET_ONLY" or pos.entry_attempt > 0:
        return {"side": order_side(pos.side), "order_type": "MARKET", "quantity": remaining}
    return {"side": order_side(pos.side), "order_type": "LIMIT", "quantity": remaining, "price": pos.entry_price,
            "time_in_force": "GTC"}


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


def wants_planb(pos: Position, remaining_ok: bool) -> bool:
    """Plan B (market for the remainder) is only for LIMIT_THEN_MARKET's first attempt, never after the operator
    cancelled the entry, and only when what is missing is still a tradable quantity."""
    return (pos.entry_mode == "LIMIT_THEN_MARKET" and pos.entry_attempt == 0 and not pos.entry_cancel_requested
            and remaining_ok)


# ---- margin (MARGIN_BORROW_MODE=manual) ---------------------------------------------------------------


class Borrow(msgspec.Struct, frozen=True):
    """What to borrow before the entry: `amount` of `asset` (0 = nothing missing)."""
    asset: str
    amount: Decimal


def borrow_need(side: str, qty: Decimal, entry_price: Decimal, free: Decimal, f: SymbolFilters,
                buffer_pct: Decimal) -> Borrow:
    """A long spends quote (qty x entry price), a short sells base (qty); plus MARGIN_BORROW_BUFFER_PCT for
    price moves and fees. Only the shortfall against what is free is borrowed, rounded up (step / cent)."""
    if side == "long":
        need = qty * entry_price * (1 + buffer_pct)
        return Borrow(f.quote_asset, max(ceil_to_step(need - free, Decimal("0.01")), Decimal(0)))
    need = qty * (1 + buffer_pct)
    return Borrow(f.base_asset, max(ceil_to_step(need - free, f.step_size), Decimal(0)))


# ---- start-up reconciliation -------------------------------------------------------------------------


def entry_attempt_of(cid: str) -> int | None:
    """The attempt number of one of our entry client ids (`<trade_key>-en-<n>`), else None."""
    if trade_key_of(cid) is None:
        return None
    _tk, code, n = cid.rsplit("-", 2)
    return int(n) if code == ENTRY_CODE else None


def known_trade_keys(state: State) -> set[str]:
    """Trade keys the state knows about (the live position and the last closed trade)."""
    keys = set()
    if state.position is not None:
        keys.add(state.position.trade_key)
    if state.last_closed is not None:
        keys.add(state.last_closed.trade_key)
    return keys


class Orphans(msgspec.Struct, frozen=True):
    """Entry orders on the exchange that belong to no trade the state knows."""
    open_entries: list[Order]
    filled_entries: list[Order]
    open_exits: list[Order] = []     # open exit orders of trades the state does not know (reported only)
    stale_entries: list[Order] = []  # open entry orders of the trade the state records as closed (reported only)


def find_orphans(state: State, open_orders: Sequence[Order], all_orders: Iterable[Order]) -> Orphans:
    """Open entry orders of unknown trades, and filled entries of unknown trades that no exit order of the same
    trade followed (a filled position nobody protects). An attempt superseded by a later one is skipped."""
    known = known_trade_keys(state)
    everything = list(all_orders)
    managed = {trade_key_of(o.client_order_id) for o in everything
               if trade_key_of(o.client_order_id) and entry_attempt_of(o.client_order_id) is None}
    opened = [o for o in open_orders if entry_attempt_of(o.client_order_id) is not None
              and trade_key_of(o.client_order_id) not in known]
    open_keys = {trade_key_of(o.client_order_id) for o in opened}
    filled = [o for o in everything if entry_attempt_of(o.client_order_id) is not None and not order_is_open(o)
              and o.executed_qty > 0 and trade_key_of(o.client_order_id) not in known | managed | open_keys]
    exits = [o for o in open_orders if trade_key_of(o.client_order_id) not in known | {None}
             and entry_attempt_of(o.client_order_id) is None]
    closed = state.last_closed.trade_key if state.last_closed is not None else None
    stale = [o for o in open_orders if entry_attempt_of(o.client_order_id) is not None
             and trade_key_of(o.client_order_id) == closed]
    return Orphans(open_entries=opened, filled_entries=_last_attempts(filled), open_exits=exits, stale_entries=stale)


def _last_attempts(orders: list[Order]) -> list[Order]:
    """Per trade key, the latest attempt's order (earlier attempts' fills are added by `adopt_fills`)."""
    best: dict[str, Order] = {}
    for o in orders:
        tk = trade_key_of(o.client_order_id)
        if tk not in best or entry_attempt_of(o.client_order_id) > entry_attempt_of(best[tk].client_order_id):
            best[tk] = o
    return list(best.values())


def adopted_plan(side: str, entry: Decimal, swing_extreme: Decimal | None, sl_pct: Decimal,
                 r_list: Sequence[Decimal], tick: Decimal, k: Decimal = Decimal(1)) -> EntryPlan:
    """The exit plan of an adopted entry, rebuilt from its price in SYMBOL's prices (the feed's swing re-priced by
    k; PlanError when it is not valid)."""
    sl, src = stop_loss(side, entry, None if swing_extreme is None else swing_extreme * k, sl_pct, tick)
    r = abs(entry - sl)
    tp1, tp2 = take_profits(side, entry, r, r_list, tick)
    check_order(side, sl, entry, tp1, tp2, tick)
    return EntryPlan(side=side, entry_price=entry, qty=Decimal(0), sl=sl, tp1=tp1, tp2=tp2, r=r, sl_source=src, k=k)


def adopted_entry_price(o: Order, tick: Decimal) -> Decimal:
    """The price an adopted entry is planned from: its limit price, or a market order's average fill."""
    if o.price > 0:
        return o.price
    if o.executed_qty <= 0:
        raise PlanError(f"market entry {o.client_order_id} has no fill to plan from")
    return floor_to_step(o.cummulative_quote_qty / o.executed_qty, tick)


def adopted_position(o: Order, plan: EntryPlan, symbol: str, now: float, wall_now: float) -> Position:
    """An entry order found on the exchange, as the position it belongs to (status OPEN: the next query of its
    client id decides whether it is still working or already filled). Its entry timeout runs from the order's
    own time when the exchange reports one."""
    tk = trade_key_of(o.client_order_id)
    side = "long" if o.side == "BUY" else "short"
    mode = "MARKET_ONLY" if o.type == "MARKET" else "LIMIT_ONLY"
    return Position(
        trade_key=tk, signal_key=f"adopted:{o.client_order_id}", symbol=symbol, side=side, status=Phase.OPEN,
        entry_mode=mode, entry_price=plan.entry_price, qty=o.orig_qty, sl=plan.sl, tp1=plan.tp1, tp2=plan.tp2,
        r=plan.r, signal_price=plan.entry_price, signal_ts=o.time / 1000, created_at=o.time / 1000 or now,
        entry_client_id=o.client_order_id, entry_attempt=entry_attempt_of(o.client_order_id) or 0,
        entry_order_id=o.order_id, entry_sent_at=wall_now, adopted=True, k_entry=plan.k,
    )


# ---- learning the entry's fate: the `orders` stream first, REST as the fallback ---------------------------

STREAM_SILENT_SEC = 1.5    # wall s: an expected update (after a send, a cancel) not on the stream by then -> REST
STREAM_TRUST_SEC = 15.0    # wall s: even while the stream is healthy, confirm a quiet entry by REST this often


def rest_poll_reason(*, stream_ok: bool, now: float, expect_since: float | None, heard_at: float,
                     last_rest: float, silent_sec: float = STREAM_SILENT_SEC,
                     trust_sec: float = STREAM_TRUST_SEC) -> str | None:
    """Why the entry must be queried by REST now (wall times), or None while the stream is enough.

    `stream_ok`: user_stream's heartbeat is there and connected (and the account's orders are on its stream);
    `expect_since`: when we did something the exchange answers with an update (send, cancel), None if nothing;
    `heard_at`: the last time we learned the order's state (stream, an order response or REST);
    `last_rest`: the last REST query of it."""
    if not stream_ok:
        return "stream_down"
    if expect_since is not None and heard_at < expect_since and now - expect_since >= silent_sec:
        return "stream_silent"
    if now - max(last_rest, heard_at, expect_since or 0.0) >= trust_sec:
        return "confirm"
    return None


def order_from_update(u: OrderUpdate, fills: Sequence[Fill] = ()) -> Order:
    """The exchange's record of an order as an `orders` stream update reports it (cumulative quantity and quote are
    exact; `fills`: its trades seen on the stream, given only when they add up to the executed quantity, so that a
    missing commission is looked up instead of taken as zero)."""
    return Order(symbol=u.symbol, order_id=u.order_id, client_order_id=u.client_order_id, price=u.price,
                 orig_qty=u.orig_qty, executed_qty=u.executed_qty, cummulative_quote_qty=u.cum_quote,
                 status=u.status, time_in_force=u.time_in_force, type=u.order_type, side=u.side,
                 order_list_id=u.order_list_id, stop_price=u.stop_price, update_time=u.transact_time,
                 transact_time=u.transact_time, is_working=u.is_working, fills=list(fills))


def stream_fill(u: OrderUpdate) -> Fill | None:
    """The trade an update reports (a stream TRADE with its commission), else None."""
    if u.source != "ws" or u.exec_type != "TRADE" or u.last_qty <= 0:
        return None
    return Fill(price=u.last_price, qty=u.last_qty, commission=u.commission, commission_asset=u.commission_asset,
                trade_id=u.trade_id)


def complete_fills(fills: Sequence[Fill], executed_qty: Decimal) -> list[Fill]:
    """`fills` (deduplicated by trade id) when they account for all of `executed_qty`, else [] (look them up)."""
    seen: dict[int, Fill] = {}
    for f in fills:
        seen.setdefault(f.trade_id, f)
    out = list(seen.values())
    return out if executed_qty > 0 and sum((f.qty for f in out), Decimal(0)) == executed_qty else []
