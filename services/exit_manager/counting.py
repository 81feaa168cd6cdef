"""Counting what an attempt of a leg filled into the leg, from the exchange's final records: after a cancel (a stop
move, a flatten) and when the learning step or a manual close settles it. Owns the reads of an order not found yet."""
from __future__ import annotations

from services.exit_manager.exchange import TickAborted
from services.exit_manager.parts import Part, Parts
from shared.domain import transitions as tr
from shared.domain.exit_rules import LegFills, leg_ids, read_attempt, remaining
from shared.domain.position import Leg, LegStatus, Position

MISSING_READS = 5   # reads of an order that is not found before its absence counts (Binance's -2013 lags)


class LegCounter(Part):
    """Writes an attempt's fills into its leg (one transaction each)."""

    def __init__(self, p: Parts) -> None:
        super().__init__(p)
        self._missing_reads: dict[tuple[str, str, int], int] = {}   # (trade, leg, attempt) -> reads not found

    def count_attempt(self, pos: Position, name: str, attempt: int) -> Position | None:
        """Count what `attempt` of a leg filled (its orders must be final by now)."""
        leg = next(lg for lg in pos.legs if lg.name == name)
        if attempt < 0 or leg.counted_attempt >= attempt:
            return pos
        ids = leg_ids(pos.trade_key, name, attempt)
        orders = {i: self.feed.final(i) or self.exchange.query(i) for i in (ids.tp_id, ids.stop_id) if i}
        if attempt < leg.attempt or leg.status == LegStatus.PLACED:   # it was on the exchange (a stop moves from PLACED)
            self._check_missing(pos, name, attempt, orders)
        prev = Leg(name=name, qty=leg.qty, stop_price=leg.stop_price, stop_limit=leg.stop_limit,
                   tp_client_id=ids.tp_id, stop_client_id=ids.stop_id)
        fills = read_attempt(prev, {k: v for k, v in orders.items() if v is not None})
        if fills.open:
            raise TickAborted(f"orders of {name} attempt {attempt} still open after cancel")
        return self._count_old(pos, name, attempt, fills)

    def _check_missing(self, pos: Position, name: str, attempt: int, orders: dict) -> None:
        """An order of a placed attempt that the exchange says does not exist: Binance answers -2013 for a while
        after an order was placed or filled, so the attempt is read again on the next ticks (TickAborted) before
        its absence is taken as "nothing filled" (MISSING_READS times): counting it as unfilled too early re-sells
        coins a take-profit already sold."""
        missing = [cid for cid, o in orders.items() if o is None]
        if not missing:
            return
        key = (pos.trade_key, name, attempt)
        self._missing_reads[key] = seen = self._missing_reads.get(key, 0) + 1
        if seen < MISSING_READS:
            raise TickAborted(f"{name} attempt {attempt}: {', '.join(missing)} not found yet (read {seen})")
        self.rt.event("order_missing_taken_as_unfilled", pos.trade_key, level="warning", leg=name, attempt=attempt,
                      client_ids=missing, reads=seen)

    def _count_old(self, pos: Position, name: str, attempt: int, fills: LegFills) -> Position | None:
        p = self.store.mutate_leg(pos.trade_key, name, tr.attempt_counted, attempt, fills, self.f)
        if fills.qty > 0 and p is not None:
            self.rt.event("leg_settled", p.trade_key, leg=name, attempt=attempt, filled=fills.qty, reason=fills.reason,
                          during="stop_move")
        return p

    def settle(self, pos: Position, name: str, attempt: int, fills: LegFills,
               source: str = "rest") -> Position | None:
        """Count an attempt's fills into its leg; the leg is DONE when nothing tradeable remains, else it
        goes back to NEW (orders cancelled outside, or a partial fill) to protect the rest."""
        p = self.store.mutate_leg(pos.trade_key, name, tr.leg_filled, attempt, fills, self.f)
        if p is not None:
            leg = next(lg for lg in p.legs if lg.name == name)
            level = "info" if leg.status == LegStatus.DONE else "warning"
            self.rt.event("leg_settled", p.trade_key, level=level, leg=name, attempt=attempt, filled=fills.qty,
                          quote=fills.quote, reason=fills.reason, status=leg.status, remaining=remaining(leg),
                          source=source)
            self._report_dust(p, leg)
        return p

    def _report_dust(self, pos: Position, leg: Leg) -> None:
        if leg.status == LegStatus.DONE and remaining(leg) > 0:
            self.rt.event("leg_dust", pos.trade_key, level="warning", leg=leg.name, qty=remaining(leg),
                          min_qty=self.f.min_qty, action="left in the account (below the exchange's minimum)")
