"""Flatten (cancel everything of the trade, count it, sell or buy back the rest at market) and close (verify
nothing of the trade is open, repay, free the slot, start the cooldown)."""
from __future__ import annotations

from decimal import Decimal

from services.exit_manager.margin import repay_after_close
from services.exit_manager.base import ExitBase, TickAborted
from shared.adapters.binance_rest import NotFound, RateLimited, Rejected, UnknownOutcome
from shared.domain.exit_rules import close_summary, exit_side, exit_total
from shared.domain.messages import PositionEvent
from shared.domain.order_ids import client_id, trade_key_of
from shared.domain.orders import Order, order_is_open
from shared.domain.position import Position, State, net_qty




class Closing(ExitBase):
    """Flatten and close."""

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
