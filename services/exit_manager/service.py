"""exit_manager: a filled position is never without a stop, from the first fill to the last coin.

Legs: tp1 and tp2 each rest as an OCO (LIMIT_MAKER take-profit + STOP_LOSS_LIMIT for that leg's quantity)
and the rest as a STOP_LOSS_LIMIT (the trailing leg), so the stops cover the whole position without
locking a coin twice. Each tick first learns what filled from the exchange's records, then acts: the records come
from the `orders` stream (user_stream) as they happen, an update about one of the trade's orders wakes a tick at
once; REST (open orders, then queries) is the fallback: at start, while the stream is down, when an update our own
action is owed is not on it in time, and as a slow safety sweep, all within EXIT_REST_WEIGHT_BUDGET_PER_MIN.
Placing, cancelling and flattening never wait for that budget. Every order id is deterministic (trade key, leg,
attempt): after a crash the manager adopts what exists.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from services.exit_manager.fees import exit_fee_rate
from services.exit_manager.manual_close import ManualCloseWatch
from services.exit_manager.margin import repay_after_close, side_effect
from services.exit_manager.order_feed import ExitFeed, Waker
from shared.adapters.agg_feed import FeedUnavailable, read_last_bars
from shared.adapters.binance_rest import (
    BinanceClient,
    BinanceError,
    CancelReplaceFailed,
    CancelReplacePartial,
    NotFound,
    RateLimited,
    Rejected,
    UnknownOutcome,
)
from shared.adapters.redis_streams import Entry, GroupConsumer
from shared.domain.bars import BadHeader
from shared.domain.exit_plan import stop_limit_price
from shared.domain.exit_rules import (
    LegFills,
    be_price,
    better,
    close_summary,
    exit_side,
    exit_total,
    failsafe_due,
    immediate_reason,
    leg_ids,
    leg_spent,
    nearest_stop,
    oco_stop_lost,
    plan_legs,
    read_attempt,
    remaining,
    rest_learn_reason,
    stream_view,
    trail_candidate,
    trail_move,
    with_ids,
)
from shared.domain.messages import Command, PositionEvent
from shared.domain.order_ids import client_id, trade_key_of
from shared.domain.order_updates import OrderUpdate
from shared.domain.orders import Order, order_is_open
from shared.domain.position import EXIT_PHASES, Leg, Position, State, net_qty
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime, boot
from shared.service_loop import handle_entry, run_guarded, wait_for_filters

PROCESS = "exit_manager"
NOT_FOUND_GRACE_SEC = 3.0
STARVED_LOG_SEC = 10.0  # a REST budget that refuses every other tick is one log line per this, not one per tick
BOOK_TICKER_WEIGHT = 2
ORDER_LIST_WEIGHT = 4
_IMMEDIATE = ("would trigger immediately", "would immediately match")


class TickAborted(Exception):
    """The exchange could not be read this tick; act on nothing, try again next tick."""


class ExitManager:
    """The exit phase of the position."""

    def __init__(self, rt: Runtime, client: BinanceClient, f: SymbolFilters, fee_rate: Decimal | None = None) -> None:
        self.rt, self.cfg, self.client, self.f = rt, rt.cfg, client, f
        # commission rate of the exits (a short's legs buy enough to cover it): read once at start
        self.fee_rate = rt.cfg.EXIT_FEE_RATE_FALLBACK if fee_rate is None else fee_rate
        self.positions = GroupConsumer(rt.r, self.cfg.key("positions"), PROCESS, PROCESS)
        self.commands = GroupConsumer(rt.r, self.cfg.key("commands"), PROCESS, PROCESS, start_id="$")
        self._next_tick = 0.0
        self._flatten_retry_at: dict[str, float] = {}  # a refused market close waits EXITS_RETRY_EVERY_SEC
        self._fresh: set[str] = set()  # leg ids this process created and has not sent yet (no adopt query needed)
        self.feed = ExitFeed(rt, margin=bool(client.margin))
        self._starved_logged = 0.0     # monotonic: the last `rest_budget_exhausted` line (one per STARVED_LOG_SEC)
        self.manual = ManualCloseWatch(self)

    # ---- state helpers --------------------------------------------------------------------------

    def _pos(self) -> Position | None:
        p = self.rt.store.load().position
        return p if p is not None and p.status in EXIT_PHASES else None

    def _mutate(self, trade_key: str, fn: Callable[[Position], None]) -> Position | None:
        """Apply `fn` to the position if it is still this trade in the exit phase; return it."""
        def tx(st: State):
            p = st.position
            if p is None or p.trade_key != trade_key or p.status not in EXIT_PHASES:
                return None
            fn(p)
            return st, []
        p = self.rt.store.update(tx).position
        return p if p is not None and p.trade_key == trade_key and p.status in EXIT_PHASES else None

    def _mutate_leg(self, trade_key: str, name: str, fn: Callable[[Position, Leg], None]) -> Position | None:
        def on_pos(p: Position) -> None:
            fn(p, next(leg for leg in p.legs if leg.name == name))
        return self._mutate(trade_key, on_pos)

    def _query(self, cid: str, poll: str = "") -> Order | None:
        """GET one order by client id. `poll`: the REST read it is part of (counted as polling), else an action."""
        if poll:
            self.feed.poll_weight += self.feed.query_weight
            self.feed.budget.charge(self.feed.query_weight, time.time())
        else:
            self.feed.charge_action(self.feed.query_weight)
        try:
            o = self.client.get_order(self.cfg.SYMBOL, client_order_id=cid)
        except NotFound:
            return None
        except (UnknownOutcome, RateLimited) as e:
            raise TickAborted(str(e)) from None
        self.feed.note(o)
        return o

    # ---- the tick -------------------------------------------------------------------------------

    def tick(self, force: bool = False) -> None:
        """Learn, then finalise / flatten / place / move, in that order."""
        if not force and time.monotonic() < self._next_tick:
            return
        self._next_tick = time.monotonic() + self.cfg.REST_POLL_MS / 1000
        pos = self._pos()
        if pos is None:
            return
        self.feed.follow(pos.trade_key)
        try:
            self._tick(pos)
        except TickAborted as e:
            self.rt.log.warning("tick_aborted", trade_key=pos.trade_key, reason=str(e))
        except BinanceError as e:
            # Unreachable, or a refusal nobody planned for: every step is recorded before it is taken, so the
            # next tick resumes from the state and the exchange.
            self.rt.log.warning("tick_failed", trade_key=pos.trade_key, error=str(e), kind=type(e).__name__)

    def _tick(self, pos: Position) -> None:
        if not pos.legs and not pos.flatten_requested:
            pos = self._init_legs(pos)
        pos = self._learn(pos)
        pos = self.manual.watch(pos) if pos is not None else None
        if pos is None:
            return
        if pos.flatten_requested:
            if self.rt.clock.now() >= self._flatten_retry_at.get(pos.trade_key, 0.0):
                self._flatten(pos)
        elif all(leg.status == "DONE" for leg in pos.legs):
            self._close(pos)
        else:
            self._act(pos)

    def _act(self, pos: Position) -> None:
        for name in [lg.name for lg in pos.legs]:
            leg = next(lg for lg in pos.legs if lg.name == name)
            if leg.status not in ("NEW", "REPLACING") or (leg.errors and self.rt.clock.now() < pos.exits_next_at):
                continue  # a leg that was refused waits EXITS_RETRY_EVERY_SEC; the others are placed at once
            p = self._place(pos, leg) if leg.status == "NEW" else self._resolve_replacing(pos, leg)
            pos = p or self._pos()
            if pos is None or pos.flatten_requested:
                return
        pos = self._maybe_break_even(pos) or pos
        self._maybe_trail(pos)

    def _init_legs(self, pos: Position) -> Position:
        legs, wrote = plan_legs(pos, self.f, self.cfg.SL_LIMIT_GAP_TICKS, self.fee_rate), []
        total = exit_total(pos, self.fee_rate, self.f.step_size)

        def fn(p: Position) -> None:
            if not p.legs:
                p.legs = legs
                p.exit_qty = total
                wrote.append(True)
        p = self._mutate(pos.trade_key, fn) or pos
        if wrote:  # this process wrote these ids first: nothing can exist under them yet
            self._fresh.update(lg.list_client_id or lg.stop_client_id for lg in legs)
        self.rt.event("legs_planned", p.trade_key, legs=[{"name": lg.name, "qty": lg.qty, "tp": lg.tp_price,
                                                         "stop": lg.stop_price} for lg in p.legs],
                      dust=self._target(p) - sum((lg.qty for lg in p.legs), Decimal(0)), fee_base=p.entry_fee_base,
                      exit_qty=self._target(p), fee_rate=self.fee_rate)
        return p

    # ---- learning (terminal first) --------------------------------------------------------------

    def _learn(self, pos: Position) -> Position | None:
        if not any(leg.status == "PLACED" for leg in pos.legs):
            return pos  # nothing resting to learn about
        open_, reason = self._rest_read(pos)
        for leg in pos.legs:
            if leg.status != "PLACED":
                continue
            if open_ is None:  # the stream's records only; an order it never reported waits for REST
                known = stream_view(leg, self.feed.records)
                if known is None:
                    continue
            else:
                ids = [i for i in (leg.tp_client_id, leg.stop_client_id) if i]
                if all(i in open_ and self.feed.final(i) is None for i in ids):
                    self._check_gap(pos, leg, open_[leg.stop_client_id])
                    continue
                orders = {i: self.feed.final(i) or open_.get(i) or self._query(i, poll=reason) for i in ids}
                if any(o is None for o in orders.values()) and time.time() - leg.placed_at < NOT_FOUND_GRACE_SEC:
                    continue  # -2013 right after placing is not proof of absence
                known = {k: v for k, v in orders.items() if v is not None}
            fills = read_attempt(leg, known)
            if fills.open:
                if fills.triggered_stop is not None:
                    self._check_gap(pos, leg, fills.triggered_stop)
                elif oco_stop_lost(leg, known):
                    pos = self._reprotect(pos, leg) or pos
                continue
            pos = self._settle(pos, leg.name, leg.attempt, fills, "stream" if open_ is None else "rest") or pos
        return self._pos()

    def _rest_read(self, pos: Position) -> tuple[dict[str, Order] | None, str]:
        """The exchange's open orders by REST when a read is due and the budget allows it, else (None, "")."""
        wall = time.time()
        reason = rest_learn_reason(stream_ok=self.feed.stream_ok(), now=wall, last_rest=self.feed.last_rest,
                                   expect_since=self.feed.expect_since(), sweep_sec=self.cfg.EXIT_REST_SWEEP_SEC)
        if reason is None:
            return None, ""
        weight = self.feed.open_orders_weight
        if not self.feed.budget.take(weight, wall):
            if time.monotonic() - self._starved_logged >= STARVED_LOG_SEC:
                self._starved_logged = time.monotonic()
                self.rt.log.warning("rest_budget_exhausted", trade_key=pos.trade_key, reason=reason,
                                    budget_per_min=self.feed.budget.per_min, ip_used=self.client.used_weight,
                                    wait_sec=round(self.feed.budget.wait_sec(weight, wall), 2))
            return None, ""
        self.feed.polled(reason, weight)
        try:
            orders = self.client.open_orders(self.cfg.SYMBOL)
        except (UnknownOutcome, RateLimited) as e:
            raise TickAborted(str(e)) from None
        finally:
            self.feed.budget.note_ip_usage(self.client.used_weight, time.time())
        self.feed.last_rest = wall
        self.feed.expect.clear()  # what they were owed, REST now tells (or the queries that follow)
        for o in orders:
            self.feed.note(o)
        return {o.client_order_id: o for o in orders}, reason

    def _reprotect(self, pos: Position, leg: Leg) -> Position | None:
        """The take-profit of an OCO partially filled and the exchange expired its stop: cancel the rest of the
        take-profit and place a new OCO (take-profit + stop) for what is really held. While the market is still at
        or beyond the take-profit a new LIMIT_MAKER would be refused, and the take-profit keeps filling: wait."""
        px = self._executable(pos.side)
        if px is None or immediate_reason(pos.side, leg, px):
            self.rt.log.info("tp_partial_wait", trade_key=pos.trade_key, leg=leg.name, market=str(px))
            return None
        self._cancel_old(leg_ids(pos.trade_key, leg.name, leg.attempt))
        orders = {i: self._query(i) for i in (leg.tp_client_id, leg.stop_client_id)}
        fills = read_attempt(leg, {k: v for k, v in orders.items() if v is not None})
        if fills.open:
            raise TickAborted(f"{leg.name}: take-profit still open after cancel")
        self.rt.event("leg_reprotect", pos.trade_key, level="warning", leg=leg.name, attempt=leg.attempt,
                      filled=fills.qty, reason="oco stop expired after a partial take-profit")
        return self._settle(pos, leg.name, leg.attempt, fills)

    def _settle(self, pos: Position, name: str, attempt: int, fills: LegFills,
                source: str = "rest") -> Position | None:
        """Count an attempt's fills into its leg; the leg is DONE when nothing tradeable remains, else it
        goes back to NEW (orders cancelled outside, or a partial fill) to protect the rest."""
        def fn(p: Position, leg: Leg) -> None:
            if leg.counted_attempt >= attempt:
                return
            leg.filled_qty += fills.qty
            leg.filled_quote += fills.quote
            leg.counted_attempt = attempt
            if leg_spent(leg, self.f):
                leg.status, leg.exit_reason = "DONE", fills.reason or leg.exit_reason or "cancelled"
            elif leg.status == "PLACED":
                leg.attempt += 1
                leg.status = "NEW"
                with_ids(leg, p.trade_key)
        p = self._mutate_leg(pos.trade_key, name, fn)
        if p is not None:
            leg = next(lg for lg in p.legs if lg.name == name)
            level = "info" if leg.status == "DONE" else "warning"
            self.rt.event("leg_settled", p.trade_key, level=level, leg=name, attempt=attempt, filled=fills.qty,
                          quote=fills.quote, reason=fills.reason, status=leg.status, remaining=remaining(leg),
                          source=source)
            self._report_dust(p, leg)
        return p

    def _report_dust(self, pos: Position, leg: Leg) -> None:
        if leg.status == "DONE" and remaining(leg) > 0:
            self.rt.event("leg_dust", pos.trade_key, level="warning", leg=leg.name, qty=remaining(leg),
                          min_qty=self.f.min_qty, action="left in the account (below the exchange's minimum)")

    def _check_gap(self, pos: Position, leg: Leg, stop: Order) -> None:
        """A triggered stop-limit whose limit the market has gapped through: close the rest at market."""
        if not stop.is_working or stop.type not in ("STOP_LOSS_LIMIT", "STOP_LOSS"):
            return
        px = self._executable(pos.side)
        if px is None:
            return
        gapped = px < stop.price if pos.side == "long" else px > stop.price
        if gapped:
            self.rt.event("stop_gapped", pos.trade_key, level="error", leg=leg.name, limit=stop.price, market=px)
            self._request_flatten(pos, "stop_gapped")

    def _executable(self, side: str) -> Decimal | None:
        """The price a closing market order would get (bid for a long, ask for a short)."""
        self.feed.charge_action(BOOK_TICKER_WEIGHT)
        try:
            bid, ask = self.client.book_ticker(self.cfg.SYMBOL)
        except BinanceError as e:
            self.rt.log.warning("book_ticker_failed", error=str(e))
            return None
        return bid if side == "long" else ask

    # ---- placing legs ---------------------------------------------------------------------------

    def _adopt(self, leg: Leg) -> bool:
        """True when the leg's current attempt already exists on the exchange."""
        if (leg.list_client_id or leg.stop_client_id) in self._fresh:
            return False
        if leg.list_client_id:
            self.feed.charge_action(ORDER_LIST_WEIGHT)
            try:
                self.client.get_order_list(list_client_order_id=leg.list_client_id)
                return True
            except NotFound:
                return False
            except (UnknownOutcome, RateLimited) as e:
                raise TickAborted(str(e)) from None
        return self._query(leg.stop_client_id) is not None

    def _send_leg(self, pos: Position, leg: Leg) -> None:
        qty, side = remaining(leg), exit_side(pos.side)
        if leg.name == "trail":
            self.client.place_order(self.cfg.SYMBOL, side, "STOP_LOSS_LIMIT", qty, client_order_id=leg.stop_client_id,
                                    price=leg.stop_limit, stop_price=leg.stop_price, time_in_force="GTC")
            return
        tp = {"type": "LIMIT_MAKER", "price": leg.tp_price, "cid": leg.tp_client_id}
        sl = {"type": "STOP_LOSS_LIMIT", "price": leg.stop_limit, "stop": leg.stop_price, "cid": leg.stop_client_id}
        above, below = (tp, sl) if pos.side == "long" else (sl, tp)
        self.client.place_oco(
            self.cfg.SYMBOL, side, qty, list_client_order_id=leg.list_client_id,
            above_type=above["type"], above_price=above["price"], above_stop_price=above.get("stop"),
            above_client_order_id=above["cid"], above_time_in_force="GTC" if "stop" in above else None,
            below_type=below["type"], below_price=below["price"], below_stop_price=below.get("stop"),
            below_client_order_id=below["cid"], below_time_in_force="GTC" if "stop" in below else None)

    def _place(self, pos: Position, leg: Leg) -> Position | None:
        if self._adopt(leg):
            self.rt.event("leg_adopted", pos.trade_key, leg=leg.name, attempt=leg.attempt)
            return self._mark_placed(pos, leg.name)
        t0 = time.perf_counter()
        self._fresh.discard(leg.list_client_id or leg.stop_client_id)  # sent from here on: ask before re-sending
        try:
            self._send_leg(pos, leg)
        except UnknownOutcome as e:
            self.rt.event("leg_unknown_outcome", pos.trade_key, level="warning", leg=leg.name, error=str(e))
            return None  # next tick adopts it if it exists
        except RateLimited as e:
            self.rt.event("leg_rate_limited", pos.trade_key, level="warning", leg=leg.name, retry_after=e.retry_after)
            return None
        except Rejected as e:
            return self._placement_failed(pos, leg, e)
        self.feed.expect_update(leg.tp_client_id, leg.stop_client_id)
        p = self._mark_placed(pos, leg.name)
        self.rt.event("leg_placed", pos.trade_key, leg=leg.name, attempt=leg.attempt, qty=remaining(leg),
                      tp=leg.tp_price, stop=leg.stop_price, limit=leg.stop_limit,
                      ms=round((time.perf_counter() - t0) * 1000, 2),
                      since_fill_s=round(self.rt.clock.now() - pos.filled_at, 3))
        return p

    def _mark_placed(self, pos: Position, name: str) -> Position | None:
        def fn(p: Position, leg: Leg) -> None:
            leg.status, leg.placed_at = "PLACED", time.time()
        return self._mutate_leg(pos.trade_key, name, fn)

    def _placement_failed(self, pos: Position, leg: Leg, e: Rejected) -> Position | None:
        if e.code == -2010 and self.manual.coins_missing(pos):
            return self._pos()
        why = self._why_immediate(pos, leg, e)
        if why == "stop_immediate" and self.cfg.STOP_IMMEDIATE_ACTION == "nearest":
            p = self._stop_at_nearest(pos, leg, e)
            if p is not None:
                return p
        if why:
            self.rt.event("leg_would_trigger", pos.trade_key, level="warning", leg=leg.name, error=e.msg, reason=why,
                          stop=leg.stop_price, tp=leg.tp_price, action="flatten at market")
            return self._request_flatten(pos, why)
        return self._count_rejection(pos, leg, e)

    def _stop_at_nearest(self, pos: Position, leg: Leg, e: Rejected) -> Position | None:
        """STOP_IMMEDIATE_ACTION=nearest: move the leg's stop to the closest price on the losing side of the
        market that does not trigger now; the next tick places it. None (the caller flattens) when the market
        cannot be read or the stop is already there (the exchange refused that too)."""
        px = self._executable(pos.side)
        if px is None:
            return None
        new = nearest_stop(pos.side, px, self.f.tick_size)
        if new <= 0 or new == leg.stop_price:
            return None
        limit = stop_limit_price(pos.side, new, self.cfg.SL_LIMIT_GAP_TICKS, self.f.tick_size)

        def fn(p: Position, lg: Leg) -> None:
            if lg.status == "NEW":
                lg.stop_price, lg.stop_limit = new, limit
        p = self._mutate_leg(pos.trade_key, leg.name, fn)
        self.rt.event("leg_would_trigger", pos.trade_key, level="warning", leg=leg.name, error=e.msg,
                      reason="stop_immediate", stop=leg.stop_price, tp=leg.tp_price, stop_to=new, limit_to=limit,
                      market=px, action="stop placed at the nearest price that does not trigger")
        self.rt.notify("stop_nearest", f"{leg.name}: stop {leg.stop_price} would trigger at once (market {px}); "
                       f"placed at {new} instead", "WARN", pos.trade_key)
        return p

    def _why_immediate(self, pos: Position, leg: Leg, e: Rejected) -> str:
        """stop_immediate / tp_immediate when the refusal is because the market is already through a price
        (Binance words it differently per endpoint: the OCO says 'relationship of the prices'), else ""."""
        px = self._executable(pos.side)
        why = immediate_reason(pos.side, leg, px) if px is not None else ""
        if not why and any(s in e.msg.lower() for s in _IMMEDIATE):
            why = "stop_immediate" if "trigger" in e.msg.lower() else "tp_immediate"
        return why

    def _count_rejection(self, pos: Position, leg: Leg, e: Rejected) -> Position | None:
        now = self.rt.clock.now()

        def fn(p: Position, lg: Leg) -> None:
            lg.errors += 1
            p.exits_tries += 1
            p.exits_next_at = now + self.cfg.EXITS_RETRY_EVERY_SEC
            if p.exits_first_error_at <= 0:
                p.exits_first_error_at = now
        p = self._mutate_leg(pos.trade_key, leg.name, fn)
        tries = p.exits_tries if p else pos.exits_tries + 1
        self.rt.event("leg_rejected", pos.trade_key, level="error", leg=leg.name, code=e.code, error=e.msg, tries=tries,
                      retry_in=self.cfg.EXITS_RETRY_EVERY_SEC)
        self.rt.notify("exits_error", f"{leg.name} rejected: {e.code} {e.msg}", "ERROR", pos.trade_key)
        if p is not None and self.cfg.FAILSAFE_FLATTEN and failsafe_due(
                tries=tries, max_tries=self.cfg.FAILSAFE_EXITS_MAX_TRIES, first_error_at=p.exits_first_error_at,
                now=now, grace_sec=self.cfg.FAILSAFE_EXITS_GRACE_SEC):
            return self._request_flatten(p, "failsafe")
        return p

    # ---- moving stops ---------------------------------------------------------------------------

    def _move_stop(self, pos: Position, name: str, new_stop: Decimal, why: str) -> Position | None:
        """Record the move (new attempt, new ids) first, then carry it out; a crash in between resumes."""
        limit = stop_limit_price(pos.side, new_stop, self.cfg.SL_LIMIT_GAP_TICKS, self.f.tick_size)
        cur = next(lg for lg in pos.legs if lg.name == name)
        if not better(pos.side, new_stop, cur.stop_price):
            self.rt.event("stop_move_refused", pos.trade_key, level="error", leg=name, stop=cur.stop_price,
                          to=new_stop, why=why, reason="a stop only moves in the position's favour")
            return None

        moved = []

        def fn(p: Position, leg: Leg) -> None:
            if leg.status != "PLACED" or not better(p.side, new_stop, leg.stop_price):
                return
            moved.append(leg_ids(p.trade_key, name, leg.attempt + 1))
            leg.attempt += 1
            leg.status, leg.stop_price, leg.stop_limit = "REPLACING", new_stop, limit
            leg.placed_at = time.time()  # the watchdog's grace for a stop in motion runs from here
            with_ids(leg, p.trade_key)
        p = self._mutate_leg(pos.trade_key, name, fn)
        if p is None:
            return None
        leg = next(lg for lg in p.legs if lg.name == name)
        if leg.status != "REPLACING":
            return p
        if moved:  # recorded by this process just now: nothing exists under the new ids yet
            self._fresh.add(moved[-1].list_id or moved[-1].stop_id)
        self.rt.event("stop_move", p.trade_key, leg=name, stop=new_stop, why=why, attempt=leg.attempt)
        return self._resolve_replacing(p, leg)

    def _resolve_replacing(self, pos: Position, leg: Leg) -> Position | None:
        """Finish a stop move: adopt the new orders if they exist, else cancel the old ones, count what
        they filled, and place the new ones for what remains."""
        if self._adopt(leg):
            self.rt.event("leg_adopted", pos.trade_key, leg=leg.name, attempt=leg.attempt, during="stop_move")
            p = self._count_attempt(pos, leg.name, leg.attempt - 1) or pos
            return self._mark_placed(p, leg.name)
        old = leg_ids(pos.trade_key, leg.name, leg.attempt - 1)
        t0 = time.perf_counter()
        if leg.name == "trail" and self._old_open(old.stop_id):
            done = self._cancel_replace_trail(pos, leg, old.stop_id)
            if done is not None:
                return done
        else:
            self._cancel_old(old)
        p = self._count_attempt(pos, leg.name, leg.attempt - 1)
        if p is None:
            return None
        leg = next(lg for lg in p.legs if lg.name == leg.name)
        if leg.status == "DONE":
            return p
        result = self._place(p, leg)
        self.rt.event("stop_move_window", p.trade_key, leg=leg.name, ms=round((time.perf_counter() - t0) * 1000, 2))
        return result

    def _count_attempt(self, pos: Position, name: str, attempt: int) -> Position | None:
        """Count what `attempt` of a leg filled (its orders must be final by now)."""
        leg = next(lg for lg in pos.legs if lg.name == name)
        if attempt < 0 or leg.counted_attempt >= attempt:
            return pos
        ids = leg_ids(pos.trade_key, name, attempt)
        orders = {i: self.feed.final(i) or self._query(i) for i in (ids.tp_id, ids.stop_id) if i}
        prev = Leg(name=name, qty=leg.qty, stop_price=leg.stop_price, stop_limit=leg.stop_limit,
                   tp_client_id=ids.tp_id, stop_client_id=ids.stop_id)
        fills = read_attempt(prev, {k: v for k, v in orders.items() if v is not None})
        if fills.open:
            raise TickAborted(f"orders of {name} attempt {attempt} still open after cancel")
        return self._count_old(pos, name, attempt, fills)

    def _old_open(self, cid: str) -> bool:
        o = self.feed.records.get(cid) if self.feed.stream_ok() else None  # a stale "open" only makes the
        o = o or self._query(cid)                                          # cancelReplace fail: then cancel+place
        return o is not None and order_is_open(o)

    def _cancel_replace_trail(self, pos: Position, leg: Leg, old_id: str) -> Position | None:
        """Move the trailing stop in one request; returns None when the caller must fall back."""
        t0 = time.perf_counter()
        self._fresh.discard(leg.stop_client_id)
        try:
            self.client.cancel_replace(self.cfg.SYMBOL, exit_side(pos.side), "STOP_LOSS_LIMIT", remaining(leg),
                                       cancel_orig_client_order_id=old_id, new_client_order_id=leg.stop_client_id,
                                       price=leg.stop_limit, stop_price=leg.stop_price, time_in_force="GTC")
        except (CancelReplaceFailed, CancelReplacePartial, Rejected) as e:
            self.rt.event("cancel_replace_failed", pos.trade_key, level="warning", leg=leg.name, error=str(e))
            return None
        except UnknownOutcome as e:
            raise TickAborted(str(e)) from None
        self.feed.expect_update(old_id, leg.stop_client_id)
        self.rt.event("stop_move_window", pos.trade_key, leg=leg.name, ms=round((time.perf_counter() - t0) * 1000, 2),
                      atomic=True)
        return self._mark_placed(pos, leg.name)

    def _cancel_old(self, old) -> None:
        self.feed.expect_update(old.tp_id, old.stop_id)
        try:
            if old.list_id:
                self.client.cancel_order_list(self.cfg.SYMBOL, list_client_order_id=old.list_id)
            else:
                self.client.cancel_order(self.cfg.SYMBOL, client_order_id=old.stop_id)
        except NotFound:
            pass  # already filled, expired or cancelled: the query that follows says which
        except (UnknownOutcome, RateLimited) as e:
            raise TickAborted(str(e)) from None

    def _count_old(self, pos: Position, name: str, attempt: int, fills: LegFills) -> Position | None:
        def fn(p: Position, leg: Leg) -> None:
            if leg.counted_attempt >= attempt:
                return
            leg.filled_qty += fills.qty
            leg.filled_quote += fills.quote
            leg.counted_attempt = attempt
            if leg_spent(leg, self.f):
                leg.status, leg.exit_reason = "DONE", fills.reason or "cancelled"
        p = self._mutate_leg(pos.trade_key, name, fn)
        if fills.qty > 0 and p is not None:
            self.rt.event("leg_settled", p.trade_key, leg=name, attempt=attempt, filled=fills.qty, reason=fills.reason,
                          during="stop_move")
        return p

    # ---- break-even and trailing -----------------------------------------------------------------

    def _maybe_break_even(self, pos: Position) -> Position | None:
        tp_hit = any(lg.status == "DONE" and lg.exit_reason == "tp" for lg in pos.legs if lg.name in ("tp1", "tp2"))
        if pos.be_done or not tp_hit or self.rt.clock.now() < pos.be_next_at:
            return None
        target = be_price(pos, self.f.tick_size)
        todo = [lg for lg in pos.legs if lg.status == "PLACED" and better(pos.side, target, lg.stop_price)]
        if todo:
            px = self._executable(pos.side)
            if px is None:
                return None
            if not better(pos.side, px, target):
                self.rt.event("be_past_market", pos.trade_key, level="warning", be=target, market=px)
                return self._request_flatten(pos, "be_immediate")
        for leg in todo:
            pos = self._move_stop(pos, leg.name, target, "break_even") or pos
        if all(lg.status == "DONE" or not better(pos.side, target, lg.stop_price) for lg in pos.legs):
            p = self._mutate(pos.trade_key, lambda p: setattr(p, "be_done", True))
            self.rt.event("break_even_done", pos.trade_key, stop=target)
            return p
        return self._be_failed(pos)

    def _be_failed(self, pos: Position) -> Position | None:
        now = self.rt.clock.now()

        def fn(p: Position) -> None:
            p.be_attempts += 1
            if p.be_attempts >= self.cfg.TP1_BE_MAX_ATTEMPTS:
                p.be_attempts, p.be_next_at = 0, now + self.cfg.TP1_BE_COOLDOWN_SEC
        p = self._mutate(pos.trade_key, fn)
        self.rt.event("break_even_incomplete", pos.trade_key, level="warning", attempts=p.be_attempts if p else None)
        return p

    def _maybe_trail(self, pos: Position) -> None:
        trail = next((lg for lg in pos.legs if lg.name == "trail"), None)
        if trail is None or trail.status != "PLACED" or not self.cfg.TRAIL_ACTIVATE_AFTER_TP2:
            return
        tp2_hit = any(lg.name == "tp2" and lg.status == "DONE" and lg.exit_reason == "tp" for lg in pos.legs)
        if not pos.trailing:
            if not tp2_hit:
                return
            pos = self._mutate(pos.trade_key, lambda p: setattr(p, "trailing", True)) or pos
            self.rt.event("trailing_on", pos.trade_key, stop=trail.stop_price)
        now = self.rt.clock.now()
        if now - pos.trail_last_at < self.cfg.TRAIL_UPDATE_EVERY_SEC:
            return
        pos = self._mutate(pos.trade_key, lambda p: setattr(p, "trail_last_at", now)) or pos
        new = self._trail_target(pos, trail, now)
        if new is not None:
            self._move_stop(pos, "trail", new, "trailing")

    def _trail_target(self, pos: Position, trail: Leg, now: float) -> Decimal | None:
        try:
            feed = read_last_bars(self.cfg.AGG_CSV, self.cfg.TRAIL_SWING_LOOKBACK)
        except BadHeader as e:
            self.rt.event("trail_feed_bad_header", pos.trade_key, level="error", error=str(e), action="no move")
            self.rt.notify("trail_feed_bad_header", str(e), "ERROR", pos.trade_key)
            return None
        except FeedUnavailable as e:
            self.rt.event("trail_feed_missing", pos.trade_key, level="error", error=str(e), action="no move")
            self.rt.notify("trail_feed_missing", str(e), "ERROR", pos.trade_key)
            return None
        if not feed.bars or now - (feed.bars[-1].ts + 60) > self.cfg.INVAR_FEED_STALE_SEC:
            self.rt.event("trail_feed_stale", pos.trade_key, level="warning",
                          last_bar=feed.bars[-1].ts if feed.bars else None, action="no move")
            return None
        cand = trail_candidate(pos.side, feed.bars, self.cfg.TRAIL_SWING_LR, self.cfg.TRAIL_SWING_BUFFER_USD,
                               self.f.tick_size)
        px = self._executable(pos.side)
        if px is None:
            return None
        new = trail_move(pos.side, trail.stop_price, cand, step_usd=self.cfg.TRAIL_STEP_USD,
                         last_close=feed.bars[-1].close, confirm_buffer=self.cfg.TRAIL_CONFIRM_BUFFER_USD, market=px)
        self.rt.event("trail_eval", pos.trade_key, current=trail.stop_price, candidate=cand, market=px, move_to=new)
        return new

    # ---- flatten and close ----------------------------------------------------------------------

    def _request_flatten(self, pos: Position, reason: str) -> Position | None:
        def fn(p: Position) -> None:
            if not p.flatten_requested:
                p.flatten_requested, p.status = reason, "CLOSING"
        p = self._mutate(pos.trade_key, fn)
        self.rt.event("flatten_requested", pos.trade_key, level="warning", reason=reason)
        self.rt.notify("flatten", f"flatten requested: {reason}", "WARN", pos.trade_key)
        return p

    def _trade_open_orders(self, trade_key: str) -> list[Order]:
        self.feed.charge_action(self.feed.open_orders_weight)
        try:
            return [o for o in self.client.open_orders(self.cfg.SYMBOL) if trade_key_of(o.client_order_id) == trade_key]
        except (UnknownOutcome, RateLimited) as e:
            raise TickAborted(str(e)) from None

    def _cancel_all(self, pos: Position) -> None:
        for o in self._trade_open_orders(pos.trade_key):
            try:
                if o.order_list_id != -1:
                    self.client.cancel_order_list(self.cfg.SYMBOL, order_list_id=o.order_list_id)
                else:
                    self.client.cancel_order(self.cfg.SYMBOL, client_order_id=o.client_order_id)
                self.rt.event("order_cancelled", pos.trade_key, client_id=o.client_order_id)
            except NotFound:
                continue
            except (UnknownOutcome, RateLimited) as e:
                raise TickAborted(str(e)) from None
        if self._trade_open_orders(pos.trade_key):
            raise TickAborted("orders of the trade still open after cancel")

    def _flatten(self, pos: Position) -> None:
        """Cancel every order of the trade, count what they filled, sell the rest at market, close."""
        self._cancel_all(pos)
        for leg in pos.legs:
            for attempt in range(max(leg.counted_attempt + 1, 0), leg.attempt + 1):
                if leg.status != "DONE":
                    pos = self._count_attempt(pos, leg.name, attempt) or pos
                    leg = next(lg for lg in pos.legs if lg.name == leg.name)
        pos = self._market_rest(pos)
        if pos is None:
            return
        def fn(p: Position) -> None:
            for leg in p.legs:
                if leg.status != "DONE":
                    leg.status, leg.exit_reason = "DONE", "flatten"
            p.close_reason = p.close_reason or f"flatten:{p.flatten_requested}"
        pos = self._mutate(pos.trade_key, fn)
        if pos is not None:
            self._close(pos)

    def _target(self, pos: Position) -> Decimal:
        """What the exits close in total (a short's grossed up for the buys' base commission)."""
        if pos.exit_qty > 0:
            return pos.exit_qty
        if pos.legs:  # planned before exit_qty existed: the legs cover what is held, not grossed up
            return net_qty(pos)
        return exit_total(pos, self.fee_rate, self.f.step_size)

    def _held(self, pos: Position) -> Decimal:
        sold = sum((lg.filled_qty for lg in pos.legs), Decimal(0)) + pos.flatten_qty
        return self._target(pos) - sold

    def _market_rest(self, pos: Position | None) -> Position | None:
        """MARKET-close what is still held, adopting an earlier attempt that reached the exchange."""
        while pos is not None:
            rest = (self._held(pos) // self.f.step_size) * self.f.step_size
            if rest < self.f.min_qty or rest * pos.avg_entry < self.f.min_notional:
                if rest > 0:
                    self.rt.event("flatten_dust", pos.trade_key, level="warning", qty=rest, min_qty=self.f.min_qty,
                                  min_notional=self.f.min_notional, action="left in the account (below the minimum)")
                return pos
            cid = client_id(pos.trade_key, "flatten", pos.flatten_attempt)
            o = self._query(cid) or self._send_market(pos, rest, cid)
            if o is None:  # the coins were gone: booked as a manual close
                pos = self._pos()
                continue
            if order_is_open(o):
                raise TickAborted("flatten order still open")
            pos = self._count_flatten(pos, o)
            if o.executed_qty == 0:
                raise TickAborted("market close filled nothing (no liquidity?): retry next tick")
        return None

    def _send_market(self, pos: Position, qty: Decimal, cid: str) -> Order | None:
        try:
            return self.client.place_order(self.cfg.SYMBOL, exit_side(pos.side), "MARKET", qty, client_order_id=cid)
        except (UnknownOutcome, RateLimited) as e:
            raise TickAborted(str(e)) from None
        except Rejected as e:
            if e.code == -2010 and self.manual.coins_missing(pos):
                return None
            self._flatten_rejected(pos, e)
            raise TickAborted(e.msg) from None

    def _count_flatten(self, pos: Position, o: Order) -> Position | None:
        self.rt.event("flatten_filled", pos.trade_key, qty=o.executed_qty, quote=o.cummulative_quote_qty,
                      client_id=o.client_order_id)

        def fn(p: Position) -> None:
            if p.flatten_attempt == int(o.client_order_id.rsplit("-", 1)[1]):
                p.flatten_qty += o.executed_qty
                p.flatten_quote += o.cummulative_quote_qty
                p.flatten_attempt += 1
        return self._mutate(pos.trade_key, fn)

    def _flatten_rejected(self, pos: Position, e: Rejected) -> None:
        self._flatten_retry_at[pos.trade_key] = self.rt.clock.now() + self.cfg.EXITS_RETRY_EVERY_SEC
        self.rt.event("flatten_rejected", pos.trade_key, level="error", code=e.code, error=e.msg,
                      retry_in=self.cfg.EXITS_RETRY_EVERY_SEC)
        self.rt.notify("flatten_failed", f"{e.code} {e.msg}", "CRITICAL", pos.trade_key)

    def _close(self, pos: Position) -> None:
        """All legs done: verify nothing of the trade is left open, then free the slot and start the cooldown."""
        self._cancel_all(pos)
        repay_after_close(self.rt, self.client, pos)
        now = self.rt.clock.now()
        summary = close_summary(pos, now)
        leftover = self._held(pos)

        def tx(st: State):
            if st.position is None or st.position.trade_key != pos.trade_key:
                return None
            st.position, st.last_closed = None, summary
            st.closed_count += 1
            st.cooldown_until = now + self.cfg.COOLDOWN_SEC
            return st, [(self.cfg.key("positions"), PositionEvent(kind="CLOSED", trade_key=pos.trade_key, at=now,
                                                                   detail={"reason": summary.exit_reason,
                                                                           "pnl": str(summary.pnl_quote)}))]
        self.rt.store.update(tx)
        self.rt.event("position_closed", pos.trade_key, reason=summary.exit_reason, qty=summary.qty,
                      avg_entry=summary.avg_entry, avg_exit=summary.avg_exit, pnl=summary.pnl_quote,
                      r=summary.r_multiple, dust=leftover)
        self.rt.notify("closed", f"{summary.exit_reason}: pnl {summary.pnl_quote} ({summary.r_multiple} R)", "INFO",
                       pos.trade_key)

    # ---- the `orders` stream --------------------------------------------------------------------

    def on_updates(self, entries: list[Entry]) -> bool:
        """Take in `orders` stream entries; True when one is about the current trade's exit orders."""
        if not entries:
            return False
        pos = self._pos()
        if pos is not None:
            self.feed.follow(pos.trade_key)
        woke = False
        for e in entries:
            if e.msg is None:
                self.rt.event("stream_entry_undecodable", level="error", stream=self.feed.consumer.stream, id=e.id,
                              error=e.error)
            elif isinstance(e.msg, OrderUpdate) and pos is not None:
                woke = self.feed.on_update(e.msg) or woke
        return woke

    # ---- commands ------------------------------------------------------------------------------

    def on_command(self, cmd: Command) -> None:
        """flatten: close the position at market (the other commands belong to the engine)."""
        if cmd.cmd != "flatten":
            return
        pos = self._pos()
        if pos is None:
            self.rt.event("command_noop", cmd=cmd.cmd, reason="no filled position")
            return
        self._request_flatten(pos, "operator")
        self.tick(force=True)


def run(rt: Runtime) -> None:
    """Start-up then the loop: wake on `positions`, `orders` and `commands` entries, tick the exits."""
    client = rt.client()
    if client.margin:
        client.side_effect_type = side_effect(rt)
    f = wait_for_filters(rt, client)
    fee_rate, source = exit_fee_rate(client, rt.cfg.EXIT_FEE_RATE_FALLBACK)
    rt.event("exit_fee_rate", rate=fee_rate, source=source)
    mgr = ExitManager(rt, client, f, fee_rate)
    rt.store.sync_snapshot()
    rt.event("exit_manager_ready", state_version=rt.store.load().version)
    waker = Waker(rt.r, [rt.cfg.key("positions"), rt.cfg.key("orders"), rt.cfg.key("commands")])

    def step() -> None:
        rt.beater.maybe_beat(mgr.feed.info())
        waker.mark()  # before the reads: whatever arrives after them ends the wait below at once
        for e in mgr.commands.read(block_ms=None, count=10):
            handle_entry(rt, e, lambda m: mgr.on_command(m) if isinstance(m, Command) else None, mgr.commands)
        woke = mgr.positions.read(block_ms=None, count=10)
        for e in woke:
            mgr.positions.ack(e.id)
        updates = mgr.feed.consumer.read(block_ms=None, count=50)
        mgr.tick(force=bool(woke) or mgr.on_updates(updates))
        for e in updates:  # after the tick: what they caused is in the state (or REST will tell again)
            mgr.feed.consumer.ack(e.id)
        if not woke and not updates:
            waker.wait(50)
    run_guarded(rt, step)


def main() -> None:
    rt = boot(PROCESS)
    run(rt)
