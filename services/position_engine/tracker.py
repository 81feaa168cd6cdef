"""Following the entry order on the exchange until it is filled (hand-over) or ends unfilled (Plan B or abort).

The exchange's answers come, in order of preference, from the order's own responses (the POST of the entry, the
DELETE of a cancel), from the `orders` stream (user_stream, the exchange's user data stream) and, only as a
fallback, from a REST query of the client id: when the stream is down, when an update we expect (after a send or
a cancel) is not on it within STREAM_SILENT_SEC, or to confirm a quiet entry every STREAM_TRUST_SEC. The fallback
takes its weight from REST_WEIGHT_BUDGET_PER_MIN (a token bucket) and pauses when the IP's reported weight is high.
"""
from __future__ import annotations

import time
from decimal import Decimal

from services.position_engine.order_feed import TRADES_WEIGHT, OrderFeed
from services.position_engine.sender import EntrySender
from services.position_engine.writer import PositionWriter
from shared.adapters.binance_rest import BinanceClient, BinanceError, NotFound
from shared.domain.entry_decide import (
    AbortEntry,
    NeedPrice,
    PlanB,
    ResendEntry,
    entry_cancel_due,
    entry_ended_unfilled,
    entry_missing,
    planb_or_abort,
)
from shared.domain.entry_rules import (
    complete_fills,
    entry_attempt_of,
    order_from_update,
    planb_decision,
    rest_poll_reason,
)
from shared.domain import transitions as tr
from shared.domain.order_updates import OrderUpdate
from shared.domain.orders import FILLED, Order, order_is_open
from shared.domain.position import ENGINE_PHASES, Phase, Position
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime

# A -2013 for an order we may have just sent is not proof of absence: wait this long (wall s) before re-sending.
NOT_FOUND_GRACE_SEC = 3.0
CANCEL_RETRY_SEC = 1.0     # wall s between cancel attempts of one entry


class EntryTracker:
    """Learns the entry order's status and moves the position on."""

    def __init__(self, rt: Runtime, client: BinanceClient, f: SymbolFilters, writer: PositionWriter,
                 sender: EntrySender, feed: OrderFeed) -> None:
        self.rt, self.cfg, self.client, self.f = rt, rt.cfg, client, f
        self.writer, self.sender, self.feed = writer, sender, feed
        self._next_poll = 0.0
        self._next_cancel = 0.0
        self._starved = False
        # What we know of the current entry order (by client id; wall times).
        self._cid: str | None = None
        self._expect: float | None = None   # since when an update is due (a send, a cancel)
        self._heard = 0.0                   # last time its state was learned (response, stream, REST)
        self._last_rest = 0.0

    def _watch(self, pos: Position) -> None:
        if pos.entry_client_id != self._cid:
            # A new attempt, or the first sight after a start: what was sent at entry_sent_at is not heard of yet.
            self._cid, self._expect, self._heard, self._last_rest = pos.entry_client_id, pos.entry_sent_at, 0.0, 0.0

    def _expect_update(self) -> None:
        self._expect = time.time()

    def tick(self) -> None:
        """The entry in progress: cancel it when due, and query it by REST only when the stream does not tell."""
        pos = self.rt.store.load().position
        if pos is None or pos.status not in ENGINE_PHASES:
            return
        self._watch(pos)
        if self._cancel_due(pos):
            return
        wall = time.time()
        reason = rest_poll_reason(stream_ok=self.feed.stream_ok(), now=wall, expect_since=self._expect,
                                  heard_at=self._heard, last_rest=self._last_rest)
        if reason is None or time.monotonic() < self._next_poll:
            return
        self._next_poll = time.monotonic() + self.cfg.REST_POLL_MS / 1000
        if not self.feed.budget.take(self.feed.query_weight, wall):
            if not self._starved:
                self._starved = True
                self.rt.log.warning("rest_budget_exhausted", trade_key=pos.trade_key, reason=reason,
                                    budget_per_min=self.feed.budget.per_min, ip_used=self.client.used_weight,
                                    wait_sec=round(self.feed.budget.wait_sec(self.feed.query_weight, wall), 2))
            return
        self._starved = False
        self._last_rest = wall
        self.feed.count_query(pos.trade_key)
        try:
            o = self.client.get_order(self.cfg.SYMBOL, client_order_id=pos.entry_client_id)
        except NotFound:
            self._on_missing(pos)
            return
        except (BinanceError, OSError) as e:
            self.rt.log.warning("entry_query_failed", trade_key=pos.trade_key, error=str(e))
            return
        finally:
            self.feed.budget.note_ip_usage(self.client.used_weight, time.time())
        self.on_order(pos, o)

    def on_update(self, u: OrderUpdate) -> None:
        """An `orders` stream update: if it is about the current entry order, act on it like on a REST answer."""
        if u.symbol != self.cfg.SYMBOL or entry_attempt_of(u.client_order_id) is None:
            return  # not an entry order of ours (exits are the exit manager's)
        self.feed.remember(u)
        pos = self.rt.store.load().position
        if pos is None or pos.status not in ENGINE_PHASES or u.client_order_id != pos.entry_client_id:
            return
        self.feed.updates += 1
        fills = [] if u.is_open else complete_fills(self.feed.fills.get(u.client_order_id, []), u.executed_qty)
        o = order_from_update(u, fills)
        if not u.is_open and _doubtful(o):
            o = self._confirm(pos, o)
            if o is None:
                return
        self.on_order(pos, o)

    def _confirm(self, pos: Position, o: Order) -> Order | None:
        """One REST query of the client id when the stream's final record does not add up."""
        self.rt.event("entry_update_confirm", pos.trade_key, client_id=o.client_order_id, status=o.status,
                      executed=o.executed_qty, quote=o.cummulative_quote_qty)
        self.feed.count_query(pos.trade_key)
        self.feed.budget.charge(self.feed.query_weight, time.time())
        try:
            return self.client.get_order(self.cfg.SYMBOL, client_order_id=o.client_order_id)
        except (BinanceError, OSError) as e:
            self.rt.log.warning("entry_query_failed", trade_key=pos.trade_key, error=str(e))
            self._expect_update()  # the REST fallback takes it from here
            return None

    def _on_missing(self, pos: Position) -> None:
        act = entry_missing(pos, time.time(), NOT_FOUND_GRACE_SEC)
        if isinstance(act, AbortEntry):
            if act.alert:
                self.rt.event("entry_order_vanished", pos.trade_key, level="error", client_id=pos.entry_client_id)
                self.rt.notify("entry_error", f"entry order {pos.entry_client_id} not found on the exchange", "ERROR",
                               pos.trade_key, cause="entry_not_found")
            self.sender.abort(pos, act.reason)
        elif isinstance(act, ResendEntry):
            # Intent recorded, and the exchange says (past the grace period) the order is not there: send it now.
            self.rt.event("entry_resend", pos.trade_key, client_id=pos.entry_client_id)
            pos = self.writer.update(pos.trade_key, tr.entry_resent, time.time())
            if pos is not None:
                self.resume(pos, self.sender.send(pos))

    def resume(self, pos: Position, o: Order | None) -> None:
        """Act on a send's result (None: outcome unknown: the stream, or else a REST query, will tell)."""
        if o is not None:
            self.on_order(pos, o)
        else:
            self._watch(pos)
            self._expect_update()

    def on_order(self, pos: Position, o: Order) -> None:
        """The exchange's record of the current attempt: acknowledge, then fill / wait / end."""
        if o.client_order_id and o.client_order_id != pos.entry_client_id:
            return
        self._watch(pos)
        self._heard = time.time()
        if pos.status == Phase.PENDING:
            pos = self.writer.update(pos.trade_key, tr.entry_acknowledged, o.order_id)
            if pos is None:
                return
            self.rt.event("entry_open", pos.trade_key, order_id=o.order_id, status=o.status, client_id=o.client_order_id)
        try:
            if o.status == FILLED:
                self._filled(pos, o)
            elif order_is_open(o):
                self._cancel_due(pos)
            else:
                self._ended_unfilled(pos, o)
        except (BinanceError, OSError) as e:  # every step is repeatable: a REST query starts it again
            self._expect_update()
            self.rt.event("entry_step_failed", pos.trade_key, level="warning", error=str(e), status=o.status)

    def _cancel_due(self, pos: Position) -> bool:
        """Cancel a working entry when `entry_cancel_due` says so (at most every CANCEL_RETRY_SEC). True when a
        cancel was attempted (the position may have moved on)."""
        act = entry_cancel_due(pos, self.rt.clock.now(), self.cfg.LIVE_ENTRY_TIMEOUT_SEC)
        if act is None or time.monotonic() < self._next_cancel:
            return False
        self._next_cancel = time.monotonic() + CANCEL_RETRY_SEC
        if act.why == "timeout":
            self.rt.event("entry_timeout", pos.trade_key, timeout=self.cfg.LIVE_ENTRY_TIMEOUT_SEC)
        self.cancel(pos, act.why)
        return True

    def cancel(self, pos: Position, why: str) -> None:
        """Ask the exchange to cancel the entry, and act on its answer (the order as it ended)."""
        self._watch(pos)
        try:
            o = self.client.cancel_order(self.cfg.SYMBOL, client_order_id=pos.entry_client_id)
            self.rt.event("entry_cancel_sent", pos.trade_key, client_id=pos.entry_client_id, why=why,
                          status=o.status, executed=o.executed_qty)
        except NotFound:
            self._expect_update()  # filled, cancelled or not there yet: the stream (or a query) tells which
            return
        except (BinanceError, OSError) as e:
            self._expect_update()
            self.rt.event("entry_cancel_failed", pos.trade_key, level="warning", error=str(e))
            return
        if not order_is_open(o):
            self.on_order(pos, o)
        else:
            self._expect_update()

    def _ended_unfilled(self, pos: Position, o: Order) -> None:
        """The entry order was cancelled/expired: keep a partial fill, go to Plan B, or abort."""
        fee = self._fee_base(o)
        pos = self.writer.update(pos.trade_key, *_fill_of(o, fee))
        if pos is None:
            return
        act = entry_ended_unfilled(pos, o.status, self._tradable(pos.qty - pos.filled_qty, pos.entry_price))
        if isinstance(act, NeedPrice):
            reason = self._planb_reason(pos)
            act = planb_or_abort(pos, o.status, reason)
            if reason is not None:
                self.rt.event("planb_abort", pos.trade_key, reason=reason)
        if isinstance(act, PlanB):
            self.rt.event("planb_market", pos.trade_key, remaining=act.remaining)
            nxt = self.writer.update(pos.trade_key, tr.planb_started, time.time())
            if nxt is not None:
                self.resume(nxt, self.sender.send(nxt))
        elif isinstance(act, AbortEntry):
            self.sender.abort(pos, act.reason)

    def _tradable(self, qty: Decimal, price: Decimal) -> bool:
        return qty >= self.f.min_qty and qty * price >= self.f.min_notional

    def _planb_reason(self, pos: Position) -> str | None:
        c = self.cfg
        return planb_decision(pos.side, self._executable(pos), pos, max_dev_r_mult=c.PLANB_MAX_DEV_R_MULT,
                              max_dev_usd=c.PLANB_MAX_DEV_USD, abort_if_past_tp1=c.PLANB_ABORT_IF_PAST_TP1,
                              require_price=c.PLANB_REQUIRE_PRICE)

    def _executable(self, pos: Position) -> Decimal | None:
        """The price a market order would get now: the ask for a long, the bid for a short."""
        try:
            bid, ask = self.client.book_ticker(self.cfg.SYMBOL)
        except (BinanceError, OSError) as e:
            self.rt.event("book_ticker_failed", pos.trade_key, level="warning", error=str(e))
            return None
        self.rt.event("planb_price", pos.trade_key, bid=bid, ask=ask)
        return ask if pos.side == "long" else bid

    def _fee_base(self, o: Order) -> Decimal:
        """Commission the exchange took from the bought base asset (a long's coins that are not ours to
        sell). A short's entry commission is paid in the quote asset and changes no quantity."""
        if o.executed_qty <= 0 or o.side != "BUY":
            return Decimal(0)
        fills = o.fills
        if not fills:
            self.feed.budget.charge(TRADES_WEIGHT, time.time())
            fills = self.client.my_trades(self.cfg.SYMBOL, order_id=o.order_id)
        return sum((f.commission for f in fills if f.commission_asset == self.f.base_asset), Decimal(0))

    def _filled(self, pos: Position, o: Order) -> None:
        fee = self._fee_base(o)
        if self.writer.update(pos.trade_key, *_fill_of(o, fee)) is not None:
            self.sender.hand_over(pos.trade_key)


def _doubtful(o: Order) -> bool:
    """A final record whose cumulative fields do not add up (then one REST query confirms it)."""
    return (o.executed_qty > o.orig_qty > 0 or (o.executed_qty > 0 and o.cummulative_quote_qty <= 0)
            or (o.status == FILLED and o.orig_qty > 0 and o.executed_qty != o.orig_qty))


def _fill_of(o: Order, fee_base: Decimal) -> tuple:
    """The transition that carries a final entry attempt's fills into the position (once per attempt)."""
    return tr.entry_fill_counted, o.client_order_id, o.executed_qty, o.cummulative_quote_qty, fee_base
