"""Start-up reconciliation, before any signal is taken: entry orders of ours (`<trade_key>-en-<n>`) that the
state does not know (state lost, or a crash between the exchange's accept and our write) are adopted into an
empty slot, or reported when they cannot be. It never places or cancels anything."""
from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal

from services.position_engine.plan_inputs import BasisUnavailable, FeedMissing, PlanInputs
from services.position_engine.writer import PositionWriter
from shared.adapters.binance_rest import BinanceClient, BinanceError
from shared.domain.entry_rules import (
    borrow_need,
    adopted_entry_price,
    adopted_plan,
    adopted_position,
    find_orphans,
)
from shared.domain.exit_plan import PlanError
from shared.domain.order_ids import trade_key_of
from shared.domain.orders import Order
from shared.domain.position import Position
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime


class Reconciler:
    """Compares the exchange's entry orders with the state once, at start."""

    def __init__(self, rt: Runtime, client: BinanceClient, f: SymbolFilters, writer: PositionWriter,
                 inputs: PlanInputs) -> None:
        self.rt, self.cfg, self.client, self.f, self.writer = rt, rt.cfg, client, f, writer
        self.inputs = inputs

    def run(self) -> None:
        """Read the exchange (retrying until it answers), then adopt or report each unknown entry."""
        open_orders = self._read(lambda: self.client.open_orders(self.cfg.SYMBOL), "open orders")
        history = self._history()
        state = self.rt.store.load()
        orphans = find_orphans(state, open_orders, history)
        for o in orphans.open_entries:
            self._adopt(o, [], filled=False)
        for o in orphans.filled_entries:
            tk = trade_key_of(o.client_order_id)
            self._adopt(o, [x for x in history if trade_key_of(x.client_order_id) == tk], filled=True)
        for o in orphans.open_exits:
            self._report(o, "exit order of a trade the state does not know (the exit manager's phase)")
        for o in orphans.stale_entries:
            self._report(o, "entry order still open for a trade the state records as closed")
        self.rt.event("reconcile_done", open_orders=len(open_orders), orphan_open=len(orphans.open_entries),
                      orphan_filled=len(orphans.filled_entries), state_version=state.version)

    def _read(self, call: Callable[[], list], what: str) -> list:
        delay = 0.2
        while not self.rt.stopping:
            try:
                return call()
            except (BinanceError, OSError) as e:
                self.rt.log.warning("reconcile_read_failed", what=what, error=str(e), retry_in=delay)
                time.sleep(delay)  # back-off while the exchange does not answer
                delay = min(delay * 2, 5.0)
        raise SystemExit(0)

    def _history(self) -> list[Order]:
        try:
            return self.client.all_orders(self.cfg.SYMBOL)
        except (BinanceError, OSError) as e:
            self.rt.event("reconcile_incomplete", level="warning", error=str(e),
                          reason="order history unavailable: filled entries unknown to the state cannot be found")
            self.rt.notify("reconcile_incomplete", f"order history unavailable: {e}", "WARN")
            return []

    def _adopt(self, o: Order, attempts: list[Order], filled: bool) -> None:
        tk = trade_key_of(o.client_order_id) or ""
        try:
            pos = self._position(o, attempts, filled)
        except (PlanError, BinanceError) as e:
            self._report(o, f"cannot rebuild its plan: {e}")
            return
        if not self.writer.adopt(pos):
            self._report(o, "the slot holds another position")
            return
        self.rt.event("reconcile_adopted", tk, client_id=o.client_order_id, status=pos.status, side=pos.side,
                      qty=pos.qty, filled=pos.filled_qty, entry=pos.entry_price, sl=pos.sl, tp1=pos.tp1, tp2=pos.tp2)
        self.rt.notify("reconcile_adopted", f"adopted {o.status} entry {o.client_order_id} unknown to the state "
                       f"as {pos.status}", "WARN", tk, cause=o.client_order_id)

    def _report(self, o: Order, why: str) -> None:
        tk = trade_key_of(o.client_order_id) or ""
        self.rt.event("reconcile_orphan", tk, level="error", client_id=o.client_order_id, status=o.status,
                      executed=o.executed_qty, reason=why)
        self.rt.notify("reconcile_orphan", f"entry {o.client_order_id} ({o.status}) is unknown to the state and was "
                       f"not adopted: {why}", "ERROR", tk, cause=o.client_order_id)

    def _position(self, o: Order, attempts: list[Order], filled: bool) -> Position:
        side = "long" if o.side == "BUY" else "short"
        entry = adopted_entry_price(o, self.f.tick_size)
        plan = adopted_plan(side, entry, self._extreme(side, o.time / 1000 or self.rt.clock.now()),
                            self.cfg.SL_PCT, self.cfg.TP_R_LIST, self.f.tick_size, self._k())
        pos = adopted_position(o, plan, self.cfg.SYMBOL, self.rt.clock.now(), time.time())
        self._margin_borrow(pos)
        if filled:
            self._carry_fills(pos, attempts or [o])
        return pos

    def _extreme(self, side: str, ts: float) -> Decimal | None:
        """The swing for an adopted entry: it is on the exchange already, so without a feed it gets SL_PCT's stop
        (an event says so) rather than none."""
        try:
            return self.inputs.extreme(side, ts)
        except FeedMissing as e:
            self.rt.event("reconcile_swing_unavailable", level="warning", reason=str(e))
            return None

    def _k(self) -> Decimal:
        """k for the adopted plan's swing (feed prices); 1 when the books cannot be read (the stop then comes from
        the feed's swing as it is, or SL_PCT), said in an event."""
        try:
            return self.inputs.k()
        except BasisUnavailable as e:
            self.rt.event("reconcile_basis_unknown", level="warning", reason=str(e))
            return Decimal(1)

    def _margin_borrow(self, pos: Position) -> None:
        """MARGIN_BORROW_MODE=manual: the trade's borrow was recorded only in the state that was lost, and the exit
        manager repays after the close only what the position records. The wallet's debt of the asset the entry
        needed (quote for a long, base for a short) is taken as the trade's up to what the entry could have borrowed
        (with one position at a time there is no other trade it can belong to); the rest is recorded as the debt
        from before, which the close leaves alone. Marked as done (-1) so that no second borrow is ever made."""
        if not self.client.margin or self.cfg.MARGIN_BORROW_MODE != "manual":
            return
        pos.margin_borrow_tran_id = -1
        asset = self.f.quote_asset if pos.side == "long" else self.f.base_asset
        try:
            bal = self.client.margin_wallet(self.cfg.SYMBOL).get(asset)
        except (BinanceError, OSError) as e:
            # Protecting the position matters more than its repayment: adopt it all the same, and say so
            # (the watchdog's I13 keeps watching a debt left after the close).
            self.rt.event("reconcile_borrow_unknown", pos.trade_key, level="warning", asset=asset, error=str(e))
            self.rt.notify("reconcile_borrow_unknown", f"margin wallet unreadable: {asset} borrowed for the adopted "
                           f"trade will not be repaid after its close ({e})", "WARN", pos.trade_key, cause=asset)
            return
        debt = bal.borrowed if bal is not None else Decimal(0)
        # at most what this entry could have borrowed (borrow_need with nothing free): an older debt of the
        # wallet beyond that is not the trade's to repay
        most = borrow_need(pos.side, pos.qty, pos.entry_price, Decimal(0), self.f, self.cfg.MARGIN_BORROW_BUFFER_PCT)
        pos.margin_borrow_asset, pos.margin_borrowed = asset, min(debt, most.amount)
        pos.margin_debt_before = debt - pos.margin_borrowed

    def _carry_fills(self, pos: Position, attempts: list[Order]) -> None:
        """Every attempt's fills of an already filled entry, then OPEN_FILLED (the adoption hands it over)."""
        for a in attempts:
            pos.filled_qty += a.executed_qty
            pos.filled_quote += a.cummulative_quote_qty
            if a.side == "BUY" and a.executed_qty > 0:
                # retried like the other start-up reads: without its commission the held quantity is unknown
                trades = self._read(lambda a=a: self.client.my_trades(self.cfg.SYMBOL, order_id=a.order_id),
                                    "trades of the entry")
                pos.entry_fee_base += sum((t.commission for t in trades if t.commission_asset == self.f.base_asset),
                                          Decimal(0))
        pos.qty = pos.filled_qty
        pos.counted_client_id = pos.entry_client_id
        self.writer.fill_summary(pos, self.rt.clock.now())
