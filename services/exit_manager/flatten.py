"""Flatten: cancel everything of the trade, count what it filled, sell or buy back the rest at market, close.
Owns the wait after a refused market close."""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from services.exit_manager.closing import Closer
from services.exit_manager.counting import LegCounter
from services.exit_manager.exchange import TickAborted
from services.exit_manager.parts import Part, Parts
from shared.adapters.binance_rest import RateLimited, Rejected, UnknownOutcome
from shared.domain import transitions as tr
from shared.domain.exit_decide import flatten_retry_sec
from shared.domain.exit_rules import exit_side
from shared.domain.exit_watch import FlattenDust, market_close
from shared.domain.order_ids import client_id
from shared.domain.orders import Order, order_is_open
from shared.domain.position import LegStatus, Position


class Flattener(Part):
    """Closes a position at market (operator flatten, failsafe, a stop that cannot rest)."""

    def __init__(self, p: Parts, counter: LegCounter, closer: Closer, coins_gone: Callable[[Position], bool]) -> None:
        super().__init__(p)
        self.counter, self.closer = counter, closer
        self.coins_gone = coins_gone  # after -2010: the manual-close watch books coins sold by hand (never sells twice)
        # a refused market close waits EXITS_RETRY_EVERY_SEC (the stop watchdog's: SL_WATCHDOG_RETRY_SEC)
        self._retry_at: dict[str, float] = {}

    def due(self, pos: Position) -> bool:
        """Not waiting after a refused market close."""
        return self.rt.clock.now() >= self._retry_at.get(pos.trade_key, 0.0)

    def flatten(self, pos: Position) -> None:
        """Cancel every order of the trade, count what they filled, sell the rest at market, close."""
        self.exchange.cancel_all(pos)
        for leg in pos.legs:
            for attempt in range(max(leg.counted_attempt + 1, 0), leg.attempt + 1):
                if leg.status != LegStatus.DONE:
                    pos = self.counter.count_attempt(pos, leg.name, attempt) or pos
                    leg = next(lg for lg in pos.legs if lg.name == leg.name)
        pos = self._market_rest(pos)
        if pos is None:
            return
        pos = self.store.mutate(pos.trade_key, tr.flattened)
        if pos is not None:
            self.closer.close(pos)

    def _market_rest(self, pos: Position | None) -> Position | None:
        """MARKET-close what is still held, adopting an earlier attempt that reached the exchange."""
        while pos is not None:
            a = market_close(pos, self.fee_rate, self.f)
            if isinstance(a, FlattenDust):
                if a.qty > 0:
                    self.rt.event("flatten_dust", pos.trade_key, level="warning", qty=a.qty, min_qty=self.f.min_qty,
                                  min_notional=self.f.min_notional, action="left in the account (below the minimum)")
                return pos
            cid = client_id(pos.trade_key, "flatten", pos.flatten_attempt)
            o = self.exchange.query(cid) or self._send_market(pos, a.qty, cid)
            if o is None:  # the coins were gone: booked as a manual close
                pos = self.store.pos()
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
            if e.code == -2010 and self.coins_gone(pos):
                return None
            self._rejected(pos, e)
            raise TickAborted(e.msg) from None

    def _count_flatten(self, pos: Position, o: Order) -> Position | None:
        self.rt.event("flatten_filled", pos.trade_key, qty=o.executed_qty, quote=o.cummulative_quote_qty,
                      client_id=o.client_order_id)
        return self.store.mutate(pos.trade_key, tr.flatten_filled, int(o.client_order_id.rsplit("-", 1)[1]),
                                 o.executed_qty, o.cummulative_quote_qty)

    def _rejected(self, pos: Position, e: Rejected) -> None:
        wait = flatten_retry_sec(pos.flatten_requested, self.cfg.EXITS_RETRY_EVERY_SEC, self.cfg.SL_WATCHDOG_RETRY_SEC)
        self._retry_at[pos.trade_key] = self.rt.clock.now() + wait
        self.rt.event("flatten_rejected", pos.trade_key, level="error", code=e.code, error=e.msg,
                      reason=pos.flatten_requested, retry_in=wait)
        self.rt.notify("flatten_failed", f"{e.code} {e.msg}", "CRITICAL", pos.trade_key)
