"""Placing a leg exactly once (adopt what exists under its id first), alone or several at once; what a refusal
means is decided and carried out by refusals.py."""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal

from services.exit_manager.exchange import TickAborted
from services.exit_manager.parts import Part, Parts
from shared.adapters.binance_rest import NotFound, RateLimited, Rejected, UnknownOutcome
from shared.domain import transitions as tr
from shared.domain.exit_rules import (
    exit_side,
    exit_target,
    exit_total,
    plan_legs,
    remaining,
)
from shared.domain.position import Leg, Position


ORDER_LIST_WEIGHT = 4


class LegPlacer(Part):
    """Plans the legs and places each attempt of a leg once. Owns the ids this process wrote and has not sent yet
    (`_fresh`: no adopt query needed) and the threads of the legs' concurrent first placement."""

    def __init__(self, p: Parts, refused: Callable[[Position, Leg, Rejected], Position | None]) -> None:
        super().__init__(p)
        self.refused = refused  # what a refusal means (refusals.LegRefusals): the placer only places and adopts
        self._fresh: set[str] = set()  # leg ids this process created and has not sent yet (no adopt query needed)
        self._senders = ThreadPoolExecutor(max_workers=3, thread_name_prefix="leg")   # the legs' first placement

    def init_legs(self, pos: Position) -> Position:
        """Plan the legs of a position that has none (written once, with the exit total)."""
        legs = plan_legs(pos, self.f, self.cfg.SL_LIMIT_GAP_TICKS, self.fee_rate)
        # the dust ledger's carry is decided once these rest (dust_carry.py): no account read before the stops
        p, wrote = self.store.apply(pos.trade_key, tr.legs_planned, legs, exit_total(pos, self.fee_rate,
                                                                                      self.f.step_size))
        p = p or pos
        if wrote:  # this process wrote these ids first: nothing can exist under them yet
            self._fresh.update(lg.list_client_id or lg.stop_client_id for lg in legs)
        target = exit_target(p, self.fee_rate, self.f.step_size)
        self.rt.event("legs_planned", p.trade_key, legs=[{"name": lg.name, "qty": lg.qty, "tp": lg.tp_price,
                                                         "stop": lg.stop_price} for lg in p.legs],
                      dust=target - sum((lg.qty for lg in p.legs), Decimal(0)), fee_base=p.entry_fee_base,
                      exit_qty=target, fee_rate=self.fee_rate, dust_in=p.dust_in)
        return p

    def wrote_fresh(self, cid: str) -> None:
        """`cid` was just recorded by this process: nothing exists under it yet."""
        self._fresh.add(cid)

    def sending(self, cid: str) -> None:
        """`cid` is sent from here on: ask the exchange before sending it again."""
        self._fresh.discard(cid)

    def adopt(self, leg: Leg) -> bool:
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
        return self.exchange.query(leg.stop_client_id) is not None

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

    def place(self, pos: Position, leg: Leg) -> Position | None:
        """Place the leg's current attempt, or adopt it when it exists already; the position afterwards."""
        if self.adopt(leg):
            self.rt.event("leg_adopted", pos.trade_key, leg=leg.name, attempt=leg.attempt)
            return self.store.mark_placed(pos, leg.name)
        t0 = time.perf_counter()
        self.sending(leg.list_client_id or leg.stop_client_id)
        try:
            self._send_leg(pos, leg)
        except (UnknownOutcome, RateLimited, Rejected) as e:
            return self._sent(pos, leg, t0, e)
        return self._sent(pos, leg, t0, None)

    def place_new(self, pos: Position, legs: list[Leg]) -> Position | None:
        """Place several NEW legs at once: the ones that exist are adopted, the others are sent concurrently, so a
        slow reply to one leg's request never keeps the others' coins without a stop; then each outcome is
        recorded in turn, as `place` does. Their ids are in the state already, so a crash anywhere here is
        resumed by the next start's adopt queries."""
        todo = []
        for leg in legs:
            if self.adopt(leg):
                self.rt.event("leg_adopted", pos.trade_key, leg=leg.name, attempt=leg.attempt)
                pos = self.store.mark_placed(pos, leg.name) or pos
            else:
                todo.append(leg)
        if len(todo) < 2:
            return self.place(pos, todo[0]) if todo else pos
        for leg in todo:
            self.sending(leg.list_client_id or leg.stop_client_id)
        t0 = time.perf_counter()
        futures = [self._senders.submit(self._send_leg, pos, leg) for leg in todo]
        errors = [f.exception() for f in futures]
        for leg, err in zip(todo, errors):
            if err is not None and not isinstance(err, (UnknownOutcome, RateLimited, Rejected)):
                raise err  # as from a sequential send: the tick aborts, the next one adopts what was sent
        for leg, err in zip(todo, errors):
            cur = self.store.pos()
            if cur is None or cur.flatten_requested:
                return cur
            pos = self._sent(cur, next(lg for lg in cur.legs if lg.name == leg.name), t0, err) or cur
        return pos

    def _sent(self, pos: Position, leg: Leg, t0: float, e: Exception | None) -> Position | None:
        """Record the outcome of one leg's request (`e` None: accepted)."""
        if isinstance(e, UnknownOutcome):
            self.rt.event("leg_unknown_outcome", pos.trade_key, level="warning", leg=leg.name, error=str(e))
            return None  # next tick adopts it if it exists
        if isinstance(e, RateLimited):
            self.rt.event("leg_rate_limited", pos.trade_key, level="warning", leg=leg.name, retry_after=e.retry_after)
            return None
        if isinstance(e, Rejected):
            return self.refused(pos, leg, e)
        self.feed.expect_update(leg.tp_client_id, leg.stop_client_id)
        p = self.store.mark_placed(pos, leg.name)
        self.rt.event("leg_placed", pos.trade_key, leg=leg.name, attempt=leg.attempt, qty=remaining(leg),
                      tp=leg.tp_price, stop=leg.stop_price, limit=leg.stop_limit,
                      ms=round((time.perf_counter() - t0) * 1000, 2),
                      since_fill_s=round(self.rt.clock.now() - pos.filled_at, 3))
        return p
