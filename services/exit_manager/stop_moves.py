"""Moving stops: recorded first (new attempt, new ids), then carried out by an OCO replacement or one
cancelReplace. A stop only moves in favour."""
from __future__ import annotations

import time
from decimal import Decimal

from services.exit_manager.counting import LegCounter
from services.exit_manager.exchange import TickAborted
from services.exit_manager.parts import Part, Parts
from services.exit_manager.placement import LegPlacer
from shared.adapters.binance_rest import (
    CancelReplaceFailed,
    CancelReplacePartial,
    Rejected,
    UnknownOutcome,
)
from shared.domain import transitions as tr
from shared.domain.exit_plan import stop_limit_price
from shared.domain.exit_rules import better, exit_side, leg_ids, remaining
from shared.domain.orders import order_is_open
from shared.domain.position import Leg, LegStatus, Position


class StopMover(Part):
    """Moves a leg's stop: the move is written first, then carried out; a crash in between resumes."""

    def __init__(self, p: Parts, counter: LegCounter, placer: LegPlacer) -> None:
        super().__init__(p)
        self.counter, self.placer = counter, placer

    def move(self, pos: Position, name: str, new_stop: Decimal, why: str) -> Position | None:
        """Record the move (new attempt, new ids) first, then carry it out; a crash in between resumes."""
        limit = stop_limit_price(pos.side, new_stop, self.cfg.SL_LIMIT_GAP_TICKS, self.f.tick_size)
        cur = next(lg for lg in pos.legs if lg.name == name)
        if not better(pos.side, new_stop, cur.stop_price):
            self.rt.event("stop_move_refused", pos.trade_key, level="error", leg=name, stop=cur.stop_price,
                          to=new_stop, why=why, reason="a stop only moves in the position's favour")
            return None

        p, moved = self.store.apply(pos.trade_key, tr.on_leg, name, tr.stop_moved, new_stop, limit, time.time())
        if p is None:
            return None
        leg = next(lg for lg in p.legs if lg.name == name)
        if leg.status != LegStatus.REPLACING:
            return p
        if moved:  # recorded by this process just now: nothing exists under the new ids yet
            self.placer.wrote_fresh(moved.list_id or moved.stop_id)
        self.rt.event("stop_move", p.trade_key, leg=name, stop=new_stop, why=why, attempt=leg.attempt)
        return self.resolve_replacing(p, leg)

    def resolve_replacing(self, pos: Position, leg: Leg) -> Position | None:
        """Finish a stop move: adopt the new orders if they exist, else cancel the old ones, count what
        they filled, and place the new ones for what remains."""
        if self.placer.adopt(leg):
            self.rt.event("leg_adopted", pos.trade_key, leg=leg.name, attempt=leg.attempt, during="stop_move")
            p = self.counter.count_attempt(pos, leg.name, leg.attempt - 1) or pos
            return self.store.mark_placed(p, leg.name)
        old = leg_ids(pos.trade_key, leg.name, leg.attempt - 1)
        t0 = time.perf_counter()
        if leg.name == "trail" and self._old_open(old.stop_id):
            done = self._cancel_replace_trail(pos, leg, old.stop_id)
            if done is not None:
                return done
        else:
            self.exchange.cancel_old(old)
        p = self.counter.count_attempt(pos, leg.name, leg.attempt - 1)
        if p is None:
            return None
        leg = next(lg for lg in p.legs if lg.name == leg.name)
        if leg.status == LegStatus.DONE:
            return p
        result = self.placer.place(p, leg)
        self.rt.event("stop_move_window", p.trade_key, leg=leg.name, ms=round((time.perf_counter() - t0) * 1000, 2))
        return result

    def _old_open(self, cid: str) -> bool:
        # a stale "open" only makes the cancelReplace fail: then cancel + place
        o = self.feed.records.get(cid) if self.feed.stream_ok() else None
        o = o or self.exchange.query(cid)
        return o is not None and order_is_open(o)

    def _cancel_replace_trail(self, pos: Position, leg: Leg, old_id: str) -> Position | None:
        """Move the trailing stop in one request; returns None when the caller must fall back."""
        t0 = time.perf_counter()
        self.placer.sending(leg.stop_client_id)
        try:
            self.client.cancel_replace(self.cfg.SYMBOL, exit_side(pos.side), "STOP_LOSS_LIMIT", remaining(leg),
                                       cancel_orig_client_order_id=old_id, new_client_order_id=leg.stop_client_id,
                                       price=leg.stop_limit, stop_price=leg.stop_price, time_in_force="GTC")
        except CancelReplacePartial as e:
            # -2021: the old stop is cancelled and the matching engine refused the new one (e.g. it would trigger
            # at once): nothing rests. The caller's cancel + place finds the old one gone and places (or flattens).
            self.rt.event("cancel_replace_failed", pos.trade_key, level="warning", leg=leg.name, error=str(e),
                          old_stop="cancelled")
            return None
        except (CancelReplaceFailed, Rejected) as e:
            # -2022 (or a plain refusal): nothing was cancelled when the cancel failed because the old stop is gone
            # (filled, expired) or when Binance refused the new order before cancelling (its filters are evaluated
            # first). In the second case the old stop is still resting: keep it rather than cancel it for a new
            # one the exchange will refuse again.
            self.rt.event("cancel_replace_failed", pos.trade_key, level="warning", leg=leg.name, error=str(e),
                          cancel_result=getattr(e, "cancel_result", None), new_result=getattr(e, "new_result", None),
                          cancel_error=getattr(e, "cancel_error", None))
            return self._keep_old_stop(pos, leg, old_id, e)
        except UnknownOutcome as e:
            raise TickAborted(str(e)) from None
        self.feed.expect_update(old_id, leg.stop_client_id)
        self.rt.event("stop_move_window", pos.trade_key, leg=leg.name, ms=round((time.perf_counter() - t0) * 1000, 2),
                      atomic=True)
        return self.store.mark_placed(pos, leg.name)

    def _keep_old_stop(self, pos: Position, leg: Leg, old_id: str, e: Rejected) -> Position | None:
        """After a failed cancelReplace: when the exchange still has the old stop open, the move did not happen;
        record the leg back on the old attempt (its ids, stop and limit) and leave it resting. None (the caller
        cancels and places) when the old stop is gone."""
        old = self.exchange.query(old_id)
        if old is None or not order_is_open(old):
            return None
        p = self.store.mutate_leg(pos.trade_key, leg.name, tr.stop_move_undone, leg.attempt, old.stop_price, old.price)
        self.rt.event("stop_move_refused_old_kept", pos.trade_key, level="warning", leg=leg.name, code=e.code,
                      error=e.msg, kept=old.stop_price, wanted=leg.stop_price)
        self.rt.notify("stop_move_refused", f"{leg.name}: moving the stop to {leg.stop_price} was refused "
                       f"({e.code} {e.msg}); the stop at {old.stop_price} stays", "WARN", pos.trade_key)
        return p
