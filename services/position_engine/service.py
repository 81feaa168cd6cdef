"""position_engine: from a signal to a filled, recorded entry, exactly once.

The loop reads operator commands and signals, and ticks the entry in progress. Every step is
idempotent against a crash: the intent (client id) is saved before sending, an UNKNOWN outcome is
resolved by querying that id, and the hand-over (ENTRY_FILLED) is written in the same Redis
transaction as the state change.
"""
from __future__ import annotations

import time
from decimal import Decimal

import msgspec

from shared.adapters.agg_feed import FeedUnavailable, read_last_bars
from shared.adapters.binance_rest import (BinanceClient, BinanceError, NotFound, RateLimited, Rejected,
                                          UnknownOutcome)
from shared.adapters.redis_streams import GroupConsumer
from shared.domain.bars import BadHeader
from shared.domain.entry_rules import pending_position, planb_decision, refusal
from shared.domain.exit_plan import PlanError, build_plan
from shared.domain.messages import Command, PositionEvent, Signal
from shared.domain.order_ids import client_id
from shared.domain.orders import FILLED, Order, order_is_open
from shared.domain.position import ENGINE_PHASES, Position, State
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime, boot
from shared.service_loop import handle_entry, run_guarded, wait_for_filters

PROCESS = "position_engine"
# A -2013 for an order we may have just sent is not proof of absence: wait this long (wall s) before re-sending.
NOT_FOUND_GRACE_SEC = 3.0


class Engine:
    """The entry phase of the position."""

    def __init__(self, rt: Runtime, client: BinanceClient, filters: SymbolFilters) -> None:
        self.rt, self.cfg, self.client, self.f = rt, rt.cfg, client, filters
        self.signals = GroupConsumer(rt.r, self.cfg.key("signals"), PROCESS, PROCESS)
        self.commands = GroupConsumer(rt.r, self.cfg.key("commands"), PROCESS, PROCESS, start_id="$")
        self._next_poll = 0.0

    # ---- signals ------------------------------------------------------------------------------

    def on_signal(self, sig: Signal) -> None:
        """Refuse (with a recorded reason) or open a position for one signal."""
        state = self.rt.store.load()
        if state.position is not None and state.position.signal_key == sig.key:
            return  # re-delivered after a crash: the position for it already exists
        now = self.rt.clock.now()
        why = refusal(state, now, self.rt.halted())
        if why is not None:
            self.rt.event("signal_ignored", reason=why, signal_key=sig.key, kind=sig.kind, price=sig.price)
            return
        if sig.kind == "short" and self.cfg.TRADE_MODE == "spot":
            self.rt.event("signal_ignored", reason="short_needs_margin (TRADE_MODE=spot)", signal_key=sig.key)
            return
        try:
            plan = build_plan(sig.kind, sig.price, self.f, offset=self.cfg.ENTRY_OFFSET_USD, qty_usd=self.cfg.QTY_USD,
                              sl_pct=self.cfg.SL_PCT, r_list=self.cfg.TP_R_LIST, swing_extreme=self._swing_extreme(sig.kind))
        except PlanError as e:
            self.rt.event("signal_aborted", level="warning", reason=str(e), signal_key=sig.key)
            self.rt.notify("entry_aborted", f"invalid plan: {e}", "WARN")
            return
        pos = pending_position(sig, plan, self.cfg.SYMBOL, self.cfg.ENTRY_MODE, now, time.time())
        if not self._claim_slot(pos, plan.sl_source):
            return
        self._send_entry(pos)

    def _swing_extreme(self, side: str) -> Decimal | None:
        try:
            bars = read_last_bars(self.cfg.AGG_CSV, self.cfg.SWING_MINS).bars
        except (FeedUnavailable, BadHeader) as e:
            self.rt.event("swing_unavailable", level="warning", reason=str(e))
            return None
        if not bars:
            return None
        return min(b.low for b in bars) if side == "long" else max(b.high for b in bars)

    def _claim_slot(self, pos: Position, sl_source: str) -> bool:
        """Write the PENDING position (re-checking the gates inside the transaction)."""
        now = self.rt.clock.now()
        halted = self.rt.halted()

        def tx(st: State):
            if refusal(st, now, halted) is not None:
                return None
            st.position, st.lock_until = pos, now + self.cfg.LOCK_SEC
            return st, [(self.cfg.key("positions"), PositionEvent(kind="ENTRY_PLACED", trade_key=pos.trade_key, at=now,
                                                                   detail={"client_id": pos.entry_client_id}))]
        st = self.rt.store.update(tx)
        if st.position is None or st.position.trade_key != pos.trade_key:
            self.rt.event("signal_ignored", reason="slot_taken_concurrently", signal_key=pos.signal_key)
            return False
        self.rt.event("entry_planned", pos.trade_key, side=pos.side, entry=pos.entry_price, qty=pos.qty, sl=pos.sl,
                      tp1=pos.tp1, tp2=pos.tp2, r=pos.r, sl_source=sl_source, mode=pos.entry_mode,
                      client_id=pos.entry_client_id)
        return True

    # ---- sending and resolving the entry --------------------------------------------------------

    def _order_args(self, pos: Position) -> dict:
        side = "BUY" if pos.side == "long" else "SELL"
        remaining = pos.qty - pos.filled_qty
        if pos.entry_mode == "MARKET_ONLY" or pos.entry_attempt > 0:
            return dict(side=side, order_type="MARKET", quantity=remaining)
        return dict(side=side, order_type="LIMIT", quantity=remaining, price=pos.entry_price, time_in_force="GTC")

    def _send_entry(self, pos: Position) -> None:
        args = self._order_args(pos)
        t0 = time.perf_counter()
        try:
            o = self.client.place_order(self.cfg.SYMBOL, client_order_id=pos.entry_client_id, **args)
        except UnknownOutcome as e:
            self.rt.event("entry_unknown_outcome", pos.trade_key, level="warning", error=str(e), client_id=pos.entry_client_id)
            return  # the tick resolves it by querying the client id
        except RateLimited as e:
            self.rt.event("entry_rate_limited", pos.trade_key, level="warning", retry_after=e.retry_after)
            return
        except Rejected as e:
            self._abort(pos, f"entry_rejected: {e.code} {e.msg}")
            return
        self.rt.event("entry_sent", pos.trade_key, client_id=pos.entry_client_id, order_id=o.order_id, status=o.status,
                      ms=round((time.perf_counter() - t0) * 1000, 2), **{k: str(v) for k, v in args.items()})
        self._on_order(pos, o)

    def tick(self) -> None:
        """Advance the entry in progress (if any) from the exchange's record of the order."""
        st = self.rt.store.load()
        pos = st.position
        if pos is None or pos.status not in ENGINE_PHASES:
            return
        if time.monotonic() < self._next_poll:
            return
        self._next_poll = time.monotonic() + self.cfg.REST_POLL_MS / 1000
        try:
            o = self.client.get_order(self.cfg.SYMBOL, client_order_id=pos.entry_client_id)
        except NotFound:
            self._on_missing(pos)
            return
        except (UnknownOutcome, RateLimited) as e:
            self.rt.log.warning("entry_query_failed", trade_key=pos.trade_key, error=str(e))
            return
        self._on_order(pos, o)

    def _on_missing(self, pos: Position) -> None:
        if time.time() - pos.entry_sent_at < NOT_FOUND_GRACE_SEC:
            return
        if pos.status == "OPEN":
            self.rt.event("entry_order_vanished", pos.trade_key, level="error", client_id=pos.entry_client_id)
            self._abort(pos, "entry order not found on the exchange")
            return
        # Intent recorded but the order never reached the exchange: send it now, same client id.
        self.rt.event("entry_resend", pos.trade_key, client_id=pos.entry_client_id)
        pos = self._update_pos(pos.trade_key, lambda p: setattr(p, "entry_sent_at", time.time()))
        if pos is not None:
            self._send_entry(pos)

    def _on_order(self, pos: Position, o: Order) -> None:
        if pos.status == "PENDING":
            pos = self._update_pos(pos.trade_key, lambda p: (setattr(p, "status", "OPEN"), setattr(p, "entry_order_id", o.order_id)))
            if pos is None:
                return
            self.rt.event("entry_open", pos.trade_key, order_id=o.order_id, status=o.status)
        if o.status == FILLED:
            self._filled(pos, o)
        elif order_is_open(o):
            self._maybe_timeout(pos, o)
        else:
            self._ended_unfilled(pos, o)

    def _maybe_timeout(self, pos: Position, o: Order) -> None:
        if o.type == "MARKET" or self.rt.clock.now() - pos.created_at < self.cfg.LIVE_ENTRY_TIMEOUT_SEC:
            return
        self.rt.event("entry_timeout", pos.trade_key, executed=o.executed_qty, timeout=self.cfg.LIVE_ENTRY_TIMEOUT_SEC)
        try:
            self.client.cancel_order(self.cfg.SYMBOL, client_order_id=o.client_order_id)
        except NotFound:
            pass  # filled or cancelled meanwhile: the next query tells which
        except BinanceError as e:
            self.rt.event("entry_cancel_failed", pos.trade_key, level="warning", error=str(e))

    def _ended_unfilled(self, pos: Position, o: Order) -> None:
        """The entry order was cancelled/expired: keep a partial fill, go to Plan B, or abort."""
        fee = self._fee_base(o)
        pos = self._update_pos(pos.trade_key, lambda p: _add_fill(p, o, fee))
        if pos is None:
            return
        if self.cfg.ENTRY_MODE == "LIMIT_THEN_MARKET" and pos.entry_attempt == 0:
            reason = planb_decision(pos.side, self._executable(pos.side), pos,
                                    max_dev_r_mult=self.cfg.PLANB_MAX_DEV_R_MULT, max_dev_usd=self.cfg.PLANB_MAX_DEV_USD,
                                    abort_if_past_tp1=self.cfg.PLANB_ABORT_IF_PAST_TP1,
                                    require_price=self.cfg.PLANB_REQUIRE_PRICE)
            if reason is None and pos.qty - pos.filled_qty >= self.f.min_qty:
                self.rt.event("planb_market", pos.trade_key, remaining=pos.qty - pos.filled_qty)
                pos = self._update_pos(pos.trade_key, _next_attempt)
                if pos is not None:
                    self._send_entry(pos)
                return
            if reason is not None:
                self.rt.event("planb_abort", pos.trade_key, reason=reason)
        if pos.filled_qty >= self.f.min_qty:
            self._hand_over(pos)
        else:
            self._abort(pos, f"entry {o.status.lower()} with {pos.filled_qty} filled")

    def _executable(self, side: str) -> Decimal | None:
        try:
            bid, ask = self.client.book_ticker(self.cfg.SYMBOL)
        except BinanceError as e:
            self.rt.event("book_ticker_failed", level="warning", error=str(e))
            return None
        return ask if side == "long" else bid

    def _fee_base(self, o: Order) -> Decimal:
        """Commission the exchange took from the bought base asset (a long's coins that are not ours to
        sell). A short's entry commission is paid in the quote asset and changes no quantity."""
        if o.executed_qty <= 0 or o.side != "BUY":
            return Decimal(0)
        fills = o.fills or self.client.my_trades(self.cfg.SYMBOL, order_id=o.order_id)
        return sum((f.commission for f in fills if f.commission_asset == self.f.base_asset), Decimal(0))

    def _filled(self, pos: Position, o: Order) -> None:
        fee = self._fee_base(o)
        pos = self._update_pos(pos.trade_key, lambda p: _add_fill(p, o, fee))
        if pos is not None:
            self._hand_over(pos)

    def _hand_over(self, pos: Position) -> None:
        """OPEN_FILLED + ENTRY_FILLED on `positions`, atomically: from here the exit manager owns it."""
        now = self.rt.clock.now()

        def tx(st: State):
            p = st.position
            if p is None or p.trade_key != pos.trade_key or p.status not in ENGINE_PHASES:
                return None
            p.status, p.filled_at = "OPEN_FILLED", now
            p.avg_entry = (p.filled_quote / p.filled_qty).quantize(self.f.tick_size / 100)
            msg = PositionEvent(kind="ENTRY_FILLED", trade_key=p.trade_key, at=now,
                                detail={"qty": str(p.filled_qty), "avg_entry": str(p.avg_entry)})
            return st, [(self.cfg.key("positions"), msg)]
        st = self.rt.store.update(tx)
        if st.position is not None and st.position.trade_key == pos.trade_key and st.position.status == "OPEN_FILLED":
            p = st.position
            self.rt.event("entry_filled", p.trade_key, qty=p.filled_qty, avg_entry=p.avg_entry, side=p.side)
            self.rt.notify("opened", f"{p.side} {p.filled_qty} {p.symbol} @ {p.avg_entry}", "INFO", p.trade_key)

    def _abort(self, pos: Position, reason: str) -> None:
        now = self.rt.clock.now()

        def tx(st: State):
            if st.position is None or st.position.trade_key != pos.trade_key:
                return None
            st.position = None
            return st, [(self.cfg.key("positions"), PositionEvent(kind="ENTRY_ABORTED", trade_key=pos.trade_key, at=now,
                                                                   detail={"reason": reason}))]
        self.rt.store.update(tx)
        self.rt.event("entry_aborted", pos.trade_key, level="warning", reason=reason)
        self.rt.notify("entry_aborted", reason, "WARN", pos.trade_key)

    def _update_pos(self, trade_key: str, mutate) -> Position | None:
        """Apply `mutate(position)` if the slot still holds this trade in the entry phase."""
        def tx(st: State):
            if st.position is None or st.position.trade_key != trade_key or st.position.status not in ENGINE_PHASES:
                return None
            mutate(st.position)
            return st, []
        st = self.rt.store.update(tx)
        p = st.position
        return p if p is not None and p.trade_key == trade_key and p.status in ENGINE_PHASES else None

    # ---- operator commands ---------------------------------------------------------------------

    def on_command(self, cmd: Command) -> None:
        """halt / resume / cancel_entry (flatten belongs to the exit manager)."""
        if cmd.cmd == "halt":
            self.rt.r.set(self.cfg.key("halt"), msgspec.json.encode({"by": cmd.by, "reason": cmd.reason, "at": cmd.at}))
            self.rt.event("halt_set", by=cmd.by, reason=cmd.reason)
        elif cmd.cmd == "resume":
            self.rt.r.delete(self.cfg.key("halt"))
            self.rt.event("halt_cleared", by=cmd.by)
        elif cmd.cmd == "cancel_entry":
            pos = self.rt.store.load().position
            if pos is None or pos.status not in ENGINE_PHASES:
                self.rt.event("command_noop", cmd=cmd.cmd, reason="no pending entry")
                return
            try:
                self.client.cancel_order(self.cfg.SYMBOL, client_order_id=pos.entry_client_id)
            except NotFound:
                pass
            self.rt.event("entry_cancel_requested", pos.trade_key, by=cmd.by)
            # Prevent Plan B: the operator asked for no entry.
            self._update_pos(pos.trade_key, lambda p: setattr(p, "entry_mode", "LIMIT_ONLY"))


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


def run(rt: Runtime) -> None:
    """Start-up (filters, reconcile) then the main loop until SIGTERM."""
    client = rt.client()
    filters = wait_for_filters(rt, client)
    engine = Engine(rt, client, filters)
    rt.store.sync_snapshot()
    rt.event("engine_ready", state_version=rt.store.load().version)
    def step() -> None:
        rt.beater.maybe_beat()
        for e in engine.commands.read(block_ms=None, count=10):
            handle_entry(rt, e, lambda m: engine.on_command(m) if isinstance(m, Command) else None, engine.commands)
        engine.tick()
        busy = _entry_in_progress(rt)
        for e in engine.signals.read(block_ms=20 if busy else 200, count=1):
            handle_entry(rt, e, lambda m: engine.on_signal(m) if isinstance(m, Signal) else None, engine.signals)
    run_guarded(rt, step)


def _entry_in_progress(rt: Runtime) -> bool:
    p = rt.store.load().position
    return p is not None and p.status in ENGINE_PHASES


def main() -> None:
    rt = boot(PROCESS)
    run(rt)
