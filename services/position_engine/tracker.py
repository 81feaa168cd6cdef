"""Following the entry order on the exchange until it is filled (hand-over) or ends unfilled (Plan B or abort)."""
from __future__ import annotations

import time
from decimal import Decimal

from services.position_engine.sender import EntrySender
from services.position_engine.writer import PositionWriter
from shared.adapters.binance_rest import BinanceClient, BinanceError, NotFound
from shared.domain.entry_rules import planb_decision, wants_planb
from shared.domain.order_ids import client_id
from shared.domain.orders import FILLED, Order, order_is_open
from shared.domain.position import ENGINE_PHASES, Position
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime

# A -2013 for an order we may have just sent is not proof of absence: wait this long (wall s) before re-sending.
NOT_FOUND_GRACE_SEC = 3.0


class EntryTracker:
    """Reads the entry order's status and moves the position on."""

    def __init__(self, rt: Runtime, client: BinanceClient, f: SymbolFilters, writer: PositionWriter,
                 sender: EntrySender) -> None:
        self.rt, self.cfg, self.client, self.f = rt, rt.cfg, client, f
        self.writer, self.sender = writer, sender
        self._next_poll = 0.0

    def tick(self) -> None:
        """Query the entry in progress (at most every REST_POLL_MS) and act on the answer."""
        pos = self.rt.store.load().position
        if pos is None or pos.status not in ENGINE_PHASES or time.monotonic() < self._next_poll:
            return
        self._next_poll = time.monotonic() + self.cfg.REST_POLL_MS / 1000
        try:
            o = self.client.get_order(self.cfg.SYMBOL, client_order_id=pos.entry_client_id)
        except NotFound:
            self._on_missing(pos)
            return
        except (BinanceError, OSError) as e:
            self.rt.log.warning("entry_query_failed", trade_key=pos.trade_key, error=str(e))
            return
        self.on_order(pos, o)

    def _on_missing(self, pos: Position) -> None:
        if time.time() - pos.entry_sent_at < NOT_FOUND_GRACE_SEC:
            return
        if pos.status == "OPEN":
            self.rt.event("entry_order_vanished", pos.trade_key, level="error", client_id=pos.entry_client_id)
            self.rt.notify("entry_error", f"entry order {pos.entry_client_id} not found on the exchange", "ERROR",
                           pos.trade_key)
            self.sender.abort(pos, "entry order not found on the exchange")
            return
        if pos.entry_cancel_requested:
            self.sender.abort(pos, "cancelled by operator before the order reached the exchange")
            return
        # Intent recorded, and the exchange says (past the grace period) the order is not there: send it now.
        self.rt.event("entry_resend", pos.trade_key, client_id=pos.entry_client_id)
        pos = self.writer.update(pos.trade_key, lambda p: setattr(p, "entry_sent_at", time.time()))
        if pos is not None:
            self.resume(pos, self.sender.send(pos))

    def resume(self, pos: Position, o: Order | None) -> None:
        """Act on a send's result (None: outcome unknown, the next tick queries)."""
        if o is not None:
            self.on_order(pos, o)

    def on_order(self, pos: Position, o: Order) -> None:
        """The exchange's record of the current attempt: acknowledge, then fill / wait / end."""
        if pos.status == "PENDING":
            pos = self.writer.update(pos.trade_key, lambda p: _acknowledged(p, o))
            if pos is None:
                return
            self.rt.event("entry_open", pos.trade_key, order_id=o.order_id, status=o.status, client_id=o.client_order_id)
        try:
            if o.status == FILLED:
                self._filled(pos, o)
            elif order_is_open(o):
                self._maybe_cancel(pos, o)
            else:
                self._ended_unfilled(pos, o)
        except (BinanceError, OSError) as e:  # every step is repeatable: the next tick starts it again
            self.rt.event("entry_step_failed", pos.trade_key, level="warning", error=str(e), status=o.status)

    def _maybe_cancel(self, pos: Position, o: Order) -> None:
        """Cancel a working entry when the operator asked, or when LIVE_ENTRY_TIMEOUT_SEC (market time) is up."""
        if pos.entry_cancel_requested:
            self.cancel(pos, "operator")
            return
        if o.type == "MARKET" or self.rt.clock.now() - pos.created_at < self.cfg.LIVE_ENTRY_TIMEOUT_SEC:
            return
        self.rt.event("entry_timeout", pos.trade_key, executed=o.executed_qty, timeout=self.cfg.LIVE_ENTRY_TIMEOUT_SEC)
        self.cancel(pos, "timeout")

    def cancel(self, pos: Position, why: str) -> None:
        """Ask the exchange to cancel the entry; the next query tells how it ended."""
        try:
            self.client.cancel_order(self.cfg.SYMBOL, client_order_id=pos.entry_client_id)
            self.rt.event("entry_cancel_sent", pos.trade_key, client_id=pos.entry_client_id, why=why)
        except NotFound:
            pass  # filled, cancelled or not there yet: the next query tells which
        except (BinanceError, OSError) as e:
            self.rt.event("entry_cancel_failed", pos.trade_key, level="warning", error=str(e))

    def _ended_unfilled(self, pos: Position, o: Order) -> None:
        """The entry order was cancelled/expired: keep a partial fill, go to Plan B, or abort."""
        fee = self._fee_base(o)
        pos = self.writer.update(pos.trade_key, lambda p: _add_fill(p, o, fee))
        if pos is None:
            return
        if wants_planb(pos, self._tradable(pos.qty - pos.filled_qty, pos.entry_price)):
            reason = self._planb_reason(pos)
            if reason is None:
                self.rt.event("planb_market", pos.trade_key, remaining=pos.qty - pos.filled_qty)
                nxt = self.writer.update(pos.trade_key, _next_attempt)
                if nxt is not None:
                    self.resume(nxt, self.sender.send(nxt))
                return
            self.rt.event("planb_abort", pos.trade_key, reason=reason)
        filled = f"{pos.filled_qty.normalize():f}" if pos.filled_qty else "nothing"
        self.sender.abort(pos, f"entry {o.status.lower()} with {filled} filled"
                          + (" (cancelled by operator)" if pos.entry_cancel_requested else ""))

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
        fills = o.fills or self.client.my_trades(self.cfg.SYMBOL, order_id=o.order_id)
        return sum((f.commission for f in fills if f.commission_asset == self.f.base_asset), Decimal(0))

    def _filled(self, pos: Position, o: Order) -> None:
        fee = self._fee_base(o)
        if self.writer.update(pos.trade_key, lambda p: _add_fill(p, o, fee)) is not None:
            self.sender.hand_over(pos.trade_key)


def _acknowledged(p: Position, o: Order) -> None:
    p.status, p.entry_order_id = "OPEN", o.order_id


def _add_fill(p: Position, o: Order, fee_base: Decimal) -> None:
    """Carry a final entry attempt's executed quantity (and its base-asset commission) into the position,
    once per attempt."""
    if o.client_order_id != p.entry_client_id or p.counted_client_id == o.client_order_id:
        return
    p.filled_qty += o.executed_qty
    p.entry_fee_base += fee_base
    p.filled_quote += o.cummulative_quote_qty
    p.counted_client_id = o.client_order_id


def _next_attempt(p: Position) -> None:
    p.entry_attempt += 1
    p.entry_client_id = client_id(p.trade_key, "entry", p.entry_attempt)
    p.entry_sent_at = time.time()
    p.status = "PENDING"
    p.entry_order_id = 0
