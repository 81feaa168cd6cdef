"""Pure rules of the exit phase: leg layout, ids, break-even, trailing, reading the exchange's order
records into leg outcomes, and the closing summary."""
from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import msgspec

from shared.domain.bars import Bar
from shared.domain.exit_plan import stop_limit_price
from shared.domain.dust import trade_delta
from shared.domain.legs import leg_floor_prices, split_qty_3legs
from shared.domain.order_ids import client_id
from shared.domain.orders import FILLED, Order, order_is_open
from shared.domain.position import ClosedTrade, Leg, LegStatus, Position, net_qty
from shared.domain.risk_math import ceil_to_step, floor_to_step, round_nearest_to_step
from shared.domain.swings import last_swing_high, last_swing_low
from shared.domain.symbol import SymbolFilters


class LegIds(msgspec.Struct, frozen=True):
    """Client ids of one attempt of a leg (list and tp ids empty for the trailing leg)."""
    list_id: str
    tp_id: str
    stop_id: str


def leg_ids(trade_key: str, name: str, attempt: int) -> LegIds:
    """Deterministic ids for `name` at `attempt`."""
    if name == "trail":
        return LegIds("", "", client_id(trade_key, "trail", attempt))
    return LegIds(client_id(trade_key, f"{name}_list", attempt), client_id(trade_key, f"{name}_tp", attempt),
                  client_id(trade_key, f"{name}_stop", attempt))


def with_ids(leg: Leg, trade_key: str) -> Leg:
    """`leg` with the ids of its current attempt filled in."""
    ids = leg_ids(trade_key, leg.name, leg.attempt)
    leg.list_client_id, leg.tp_client_id, leg.stop_client_id = ids.list_id, ids.tp_id, ids.stop_id
    return leg


def short_exit_qty(held_short: Decimal, fee_rate: Decimal, step: Decimal) -> Decimal:
    """What a short's exit legs must buy in total so that, after the exchange takes its commission in the
    base asset, what is received covers what must be given back: ceil_to_step(held / (1 - fee_rate))."""
    if held_short <= 0:
        return Decimal(0)
    if not Decimal(0) <= fee_rate < 1:
        raise ValueError(f"fee rate {fee_rate} must be in [0, 1)")
    return ceil_to_step(held_short / (1 - fee_rate), step)


def exit_total(pos: Position, fee_rate: Decimal, step: Decimal) -> Decimal:
    """What the exits close in total: a long sells what it holds; a short buys back what it sold, grossed up
    for the base-asset commission of the buys (`short_exit_qty`)."""
    if pos.side == "long":
        return net_qty(pos)
    return short_exit_qty(net_qty(pos), fee_rate, step)


def exit_target(pos: Position, fee_rate: Decimal, step: Decimal) -> Decimal:
    """What the exits close in total (a short's grossed up for the buys' base commission), as planned."""
    if pos.exit_qty > 0:
        return pos.exit_qty
    if pos.legs:  # planned before exit_qty existed: the legs cover what is held, not grossed up
        return net_qty(pos)
    return exit_total(pos, fee_rate, step)


def held_qty(pos: Position, fee_rate: Decimal, step: Decimal) -> Decimal:
    """What the exits still have to close: the target less what the legs and market closes filled."""
    sold = sum((lg.filled_qty for lg in pos.legs), Decimal(0)) + pos.flatten_qty
    return exit_target(pos, fee_rate, step) - sold


def past_limit(side: str, market: Decimal, limit: Decimal) -> bool:
    """The market is beyond a triggered stop-limit's limit: it cannot fill there."""
    return market < limit if side == "long" else market > limit


def plan_legs(pos: Position, f: SymbolFilters, gap_ticks: int, fee_rate: Decimal = Decimal(0)) -> list[Leg]:
    """The three legs for the filled quantity (tp1 + tp2 as OCOs, the rest as a trailing stop); legs of
    zero quantity (degraded split) are left out. A short's legs add up to `exit_total` (commission gross-up)."""
    total = exit_total(pos, fee_rate, f.step_size)
    limit = stop_limit_price(pos.side, pos.sl, gap_ticks, f.tick_size)
    q1, q2, q3 = split_qty_3legs(total, f.step_size, f.min_qty, f.min_notional,
                                 leg_floor_prices(pos.tp1, pos.tp2, limit))
    legs = [Leg(name="tp1", qty=q1, tp_price=pos.tp1, stop_price=pos.sl, stop_limit=limit),
            Leg(name="tp2", qty=q2, tp_price=pos.tp2, stop_price=pos.sl, stop_limit=limit),
            Leg(name="trail", qty=q3, stop_price=pos.sl, stop_limit=limit)]
    return [with_ids(leg, pos.trade_key) for leg in legs if leg.qty > 0]


def exit_side(side: str) -> str:
    """The order side that closes a position."""
    return "SELL" if side == "long" else "BUY"


def remaining(leg: Leg) -> Decimal:
    """Quantity of the leg not yet filled."""
    return leg.qty - leg.filled_qty


def leg_spent(leg: Leg, f: SymbolFilters) -> bool:
    """Nothing of the leg can be placed any more: what remains is below the exchange's minimum quantity, or its
    notional at the leg's lowest price is below the minimum notional (the order would be refused)."""
    left = remaining(leg)
    prices = [p for p in (leg.tp_price, leg.stop_limit, leg.stop_price) if p]
    return left < f.min_qty or left * min(prices, default=Decimal(0)) < f.min_notional


def count_attempt(leg: Leg, attempt: int, fills: LegFills, f: SymbolFilters) -> bool:
    """Add what one attempt of the leg filled, once (False when that attempt is already counted); the leg is DONE
    when nothing tradeable remains of it."""
    if leg.counted_attempt >= attempt:
        return False
    leg.filled_qty += fills.qty
    leg.filled_quote += fills.quote
    leg.counted_attempt = attempt
    if leg_spent(leg, f):
        leg.status, leg.exit_reason = LegStatus.DONE, fills.reason or leg.exit_reason or "cancelled"
    return True


def dust(pos: Position) -> Decimal:
    """Held quantity that is in no leg (below one step)."""
    return net_qty(pos) - sum((leg.qty for leg in pos.legs), Decimal(0))


def be_price(pos: Position, tick: Decimal) -> Decimal:
    """Break-even stop (§9): the average entry to the nearest tick, as the original prints it, rounded once from
    the exact average fill (`avg_fill`; `avg_entry`, itself rounded, only in documents without it)."""
    return round_nearest_to_step(pos.avg_fill if pos.avg_fill > 0 else pos.avg_entry, tick)


def be_due(pos: Position) -> bool:
    """Break-even is armed by TP1's fill only (§9); a TP2 fill starts the trailing instead."""
    return any(lg.name == "tp1" and lg.status == LegStatus.DONE and lg.exit_reason == "tp" for lg in pos.legs)


def better(side: str, new: Decimal, old: Decimal) -> bool:
    """True when stop `new` is in the position's favour compared with `old`."""
    return new > old if side == "long" else new < old


def trail_candidate(side: str, bars: Sequence[Bar], lr: int, buffer: Decimal, tick: Decimal,
                    k: Decimal = Decimal(1)) -> Decimal | None:
    """§10: the last swing low (long) / high (short) of the feed, `buffer` beyond it, re-priced into SYMBOL's prices
    by k (§5), to the NEAREST tick as the original rounds it."""
    if side == "long":
        s = last_swing_low([b.low for b in bars], lr)
        return None if s is None else round_nearest_to_step((s - buffer) * k, tick)
    s = last_swing_high([b.high for b in bars], lr)
    return None if s is None else round_nearest_to_step((s + buffer) * k, tick)


def trail_fallback(side: str, bid: Decimal, ask: Decimal, buffer: Decimal, tick: Decimal) -> Decimal:
    """§10 at activation without a swing: SYMBOL's mid less (long) / plus (short) the buffer (0 reads as 15)."""
    b = buffer if buffer > 0 else Decimal(15)
    mid = (bid + ask) / 2
    return round_nearest_to_step(mid - b if side == "long" else mid + b, tick)


def trail_move(side: str, current: Decimal, candidate: Decimal | None, *, step_usd: Decimal, last_close: Decimal,
               confirm_buffer: Decimal, market: Decimal) -> Decimal | None:
    """The new trailing stop, or None: only in the position's favour, by at least TRAIL_STEP_USD, confirmed
    by the last bar's close when TRAIL_CONFIRM_BUFFER_USD > 0, and never at or through the market."""
    if candidate is None:
        return None
    sign = 1 if side == "long" else -1
    if sign * (candidate - current) < step_usd or not better(side, candidate, current):
        return None
    if confirm_buffer > 0 and sign * (last_close - candidate) < confirm_buffer:
        return None
    if sign * (market - candidate) <= 0:
        return None
    return candidate


class LegFills(msgspec.Struct, frozen=True):
    """What the exchange says about one attempt of a leg."""
    open: bool            # some order of the attempt can still fill
    qty: Decimal          # executed quantity over the attempt's orders
    quote: Decimal
    reason: str           # tp | stop | "" (nothing filled)
    triggered_stop: Order | None = None


def read_attempt(leg: Leg, orders: dict[str, Order]) -> LegFills:
    """Interpret the exchange's records of the current attempt's orders (missing ids are ignored)."""
    tp, stop = orders.get(leg.tp_client_id), orders.get(leg.stop_client_id)
    present = [o for o in (tp, stop) if o is not None]
    qty = sum((o.executed_qty for o in present), Decimal(0))
    quote = sum((o.cummulative_quote_qty for o in present), Decimal(0))
    reason = "tp" if tp is not None and tp.executed_qty > 0 else ("stop" if stop is not None and stop.executed_qty > 0 else "")
    trig = stop if stop is not None and order_is_open(stop) and stop.is_working else None
    return LegFills(open=any(order_is_open(o) for o in present), qty=qty, quote=quote, reason=reason, triggered_stop=trig)


def oco_stop_lost(leg: Leg, orders: dict[str, Order]) -> bool:
    """True when an OCO attempt's take-profit is still open but its stop is gone without filling: the exchange
    expires the stop when the take-profit (partially) fills, which leaves the rest of the leg unprotected."""
    tp, stop = orders.get(leg.tp_client_id), orders.get(leg.stop_client_id)
    if not leg.tp_client_id or tp is None or stop is None:
        return False
    return order_is_open(tp) and not order_is_open(stop) and stop.executed_qty == 0


def immediate_reason(side: str, leg: Leg, market: Decimal) -> str:
    """Why placing `leg` now would execute at once: "stop_immediate" (the market is at or through its stop),
    "tp_immediate" (at or through its take-profit), or "" (it would rest)."""
    if not better(side, market, leg.stop_price):
        return "stop_immediate"
    if leg.tp_price is not None and not better(side, leg.tp_price, market):
        return "tp_immediate"
    return ""


def nearest_stop(side: str, market: Decimal, tick: Decimal) -> Decimal:
    """STOP_IMMEDIATE_ACTION=nearest: the closest stop on the losing side of the market that does not trigger
    now: one tick below the bid for a long's sell stop, one tick above the ask for a short's buy stop."""
    return floor_to_step(market, tick) - tick if side == "long" else ceil_to_step(market, tick) + tick


def failsafe_due(*, tries: int, max_tries: int, first_error_at: float, now: float, grace_sec: float) -> bool:
    """FAILSAFE_FLATTEN: flatten only after FAILSAFE_EXITS_MAX_TRIES refusals AND FAILSAFE_EXITS_GRACE_SEC (market
    seconds) since the first one (`first_error_at` 0 = no refusal recorded)."""
    return tries >= max_tries and first_error_at > 0 and now - first_error_at >= grace_sec


def share_out(legs: Sequence[Leg], qty: Decimal, quote: Decimal) -> dict[str, tuple[Decimal, Decimal]]:
    """Spread `qty` (and `quote` pro rata) over `legs` in order, each up to what it has remaining:
    leg name -> (qty, quote). Used to book coins that left the account outside our orders."""
    out: dict[str, tuple[Decimal, Decimal]] = {}
    left = qty
    for leg in legs:
        take = min(remaining(leg), left)
        if take <= 0:
            continue
        out[leg.name] = (take, (quote * take / qty) if qty > 0 else Decimal(0))
        left -= take
    return out


def is_filled(o: Order | None) -> bool:
    """True for a fully filled order."""
    return o is not None and o.status == FILLED


def close_summary(pos: Position, now: float) -> ClosedTrade:
    """The closed trade: average exit over all legs and flatten fills; PnL in quote and in R on the quantity
    sold, before commissions (the entry's base-asset commission is recorded beside it)."""
    qty = sum((leg.filled_qty for leg in pos.legs), Decimal(0)) + pos.flatten_qty
    quote = sum((leg.filled_quote for leg in pos.legs), Decimal(0)) + pos.flatten_quote
    avg_exit = (quote / qty) if qty > 0 else Decimal(0)
    sign = 1 if pos.side == "long" else -1
    pnl = sign * (quote - pos.avg_entry * qty)
    risk = pos.r * qty
    reasons = [leg.exit_reason for leg in pos.legs if leg.exit_reason]
    reason = pos.close_reason or (reasons[-1] if reasons else "unknown")
    return ClosedTrade(trade_key=pos.trade_key, symbol=pos.symbol, side=pos.side, qty=qty,
                       avg_entry=pos.avg_entry, avg_exit=avg_exit.quantize(Decimal("0.0001")),
                       pnl_quote=pnl.quantize(Decimal("0.0001")),
                       r_multiple=(pnl / risk).quantize(Decimal("0.001")) if risk > 0 else Decimal(0),
                       exit_reason=reason, entry_fee_base=pos.entry_fee_base, opened_at=pos.filled_at, closed_at=now, legs=pos.legs,
                       dust_in=pos.dust_in, dust_delta=trade_delta(pos))


# ---- learning fills: the `orders` stream first, REST as the fallback ------------------------------------------

EXIT_STREAM_SILENT_SEC = 1.5   # wall s: an update we caused (place, cancel) not on the stream by then -> REST


def rest_learn_reason(*, stream_ok: bool, now: float, last_rest: float, expect_since: float | None,
                      sweep_sec: float, silent_sec: float = EXIT_STREAM_SILENT_SEC) -> str | None:
    """Why the exit manager must read its legs' orders by REST now (wall times), or None while the `orders`
    stream is enough. `last_rest`: the last REST read (0 = never, e.g. just started); `expect_since`: the oldest
    of our own actions (a placement, a cancel) whose update has not been on the stream yet, None if none."""
    if last_rest <= 0:
        return "start"
    if not stream_ok:
        return "stream_down"
    if expect_since is not None and now - expect_since >= silent_sec:
        return "stream_silent"
    if now - last_rest >= sweep_sec:
        return "sweep"
    return None


def newer_record(old: Order | None, new: Order) -> bool:
    """`new` tells at least as much as `old` about the same order (status final, executed qty, triggered), so
    that a late or re-delivered update never takes back what a newer one said."""
    if old is None:
        return True
    def rank(o: Order) -> tuple[int, Decimal, int]:
        return (0 if order_is_open(o) else 1, o.executed_qty, 1 if o.is_working else 0)
    return rank(new) >= rank(old)


def stream_view(leg: Leg, records: dict[str, Order]) -> dict[str, Order] | None:
    """The exchange's records of the current attempt's orders as the stream reported them, or None while any of
    them was never reported (then only REST can say)."""
    ids = [i for i in (leg.tp_client_id, leg.stop_client_id) if i]
    out = {i: records[i] for i in ids if i in records}
    return out if len(out) == len(ids) else None
