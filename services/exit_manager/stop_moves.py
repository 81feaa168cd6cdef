"""Moving stops: recorded first (new attempt, new ids), then carried out by an OCO replacement or one
cancelReplace; break-even after a take-profit and the swing trailing after TP2. A stop only moves in favour."""
from __future__ import annotations

import time
from decimal import Decimal

from services.exit_manager.base import ExitBase, TickAborted
from shared.adapters.agg_feed import FeedUnavailable, read_last_bars
from shared.feed_alerts import feed_failed, feed_read
from shared.adapters.binance_rest import (
    CancelReplaceFailed,
    CancelReplacePartial,
    NotFound,
    RateLimited,
    Rejected,
    UnknownOutcome,
)
from shared.domain.bars import BadHeader
from shared.domain.exit_plan import stop_limit_price
from shared.domain.exit_rules import (
    LegFills,
    be_due,
    be_price,
    better,
    count_attempt,
    exit_side,
    leg_ids,
    read_attempt,
    remaining,
    trail_candidate,
    trail_fallback,
    trail_move,
    with_ids,
)
from shared.domain.orders import order_is_open
from shared.domain.position import Leg, Position




MISSING_READS = 5   # reads of an order that is not found before its absence counts (Binance's -2013 lags)


class StopMoves(ExitBase):
    """Break-even and trailing moves."""

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
        if attempt < leg.attempt or leg.status == "PLACED":   # it was on the exchange: a stop only moves from PLACED
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
        return self._mark_placed(pos, leg.name)

    def _keep_old_stop(self, pos: Position, leg: Leg, old_id: str, e: Rejected) -> Position | None:
        """After a failed cancelReplace: when the exchange still has the old stop open, the move did not happen;
        record the leg back on the old attempt (its ids, stop and limit) and leave it resting. None (the caller
        cancels and places) when the old stop is gone."""
        old = self._query(old_id)
        if old is None or not order_is_open(old):
            return None
        moving = leg.attempt

        def fn(p: Position, lg: Leg) -> None:
            if lg.status == "REPLACING" and lg.attempt == moving:
                lg.attempt -= 1
                lg.stop_price, lg.stop_limit, lg.status = old.stop_price, old.price, "PLACED"
                with_ids(lg, p.trade_key)
        p = self._mutate_leg(pos.trade_key, leg.name, fn)
        self.rt.event("stop_move_refused_old_kept", pos.trade_key, level="warning", leg=leg.name, code=e.code,
                      error=e.msg, kept=old.stop_price, wanted=leg.stop_price)
        self.rt.notify("stop_move_refused", f"{leg.name}: moving the stop to {leg.stop_price} was refused "
                       f"({e.code} {e.msg}); the stop at {old.stop_price} stays", "WARN", pos.trade_key)
        return p

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
        p = self._mutate_leg(pos.trade_key, name, lambda _p, leg: count_attempt(leg, attempt, fills, self.f))
        if fills.qty > 0 and p is not None:
            self.rt.event("leg_settled", p.trade_key, leg=name, attempt=attempt, filled=fills.qty, reason=fills.reason,
                          during="stop_move")
        return p

    # ---- break-even and trailing -----------------------------------------------------------------

    def _maybe_break_even(self, pos: Position) -> Position | None:
        if pos.be_done or not be_due(pos) or self.rt.clock.now() < pos.be_next_at:
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
        # The original's activation places the first trailing stop without the TRAIL_STEP_USD test.
        activation = pos.trail_last_at == 0
        pos = self._mutate(pos.trade_key, lambda p: setattr(p, "trail_last_at", now)) or pos
        new = self._trail_target(pos, trail, now, activation)
        if new is not None:
            self._move_stop(pos, "trail", new, "trailing")

    def _trail_target(self, pos: Position, trail: Leg, now: float, activation: bool = False) -> Decimal | None:
        try:
            feed = read_last_bars(self.cfg.AGG_CSV, self.cfg.TRAIL_SWING_LOOKBACK)
        except BadHeader as e:
            feed_failed(self.rt, "feed_bad_header", str(e), pos.trade_key, "trail_", action="no move")
            return None
        except FeedUnavailable as e:
            feed_failed(self.rt, "feed_missing", str(e), pos.trade_key, "trail_", action="no move")
            return None
        feed_read(self.rt, feed, pos.trade_key, "trail_")
        if not feed.bars or now - (feed.bars[-1].ts + 60) > self.cfg.INVAR_FEED_STALE_SEC:
            self.rt.event("trail_feed_stale", pos.trade_key, level="warning",
                          last_bar=feed.bars[-1].ts if feed.bars else None, action="no move")
            return None
        cand = trail_candidate(pos.side, feed.bars, self.cfg.TRAIL_SWING_LR, self.cfg.TRAIL_SWING_BUFFER_USD,
                               self.f.tick_size, pos.k_entry)
        book = self._book()
        if book is None:
            return None
        px = book[0] if pos.side == "long" else book[1]
        source = "swing"
        if cand is None and activation:
            cand, source = trail_fallback(pos.side, *book, self.cfg.TRAIL_SWING_BUFFER_USD, self.f.tick_size), "mid"
        new = trail_move(pos.side, trail.stop_price, cand, step_usd=Decimal(0) if activation else self.cfg.TRAIL_STEP_USD,
                         last_close=feed.bars[-1].close * pos.k_entry, confirm_buffer=self.cfg.TRAIL_CONFIRM_BUFFER_USD,
                         market=px)
        self.rt.event("trail_eval", pos.trade_key, current=trail.stop_price, candidate=cand, source=source, market=px,
                      move_to=new, activation=activation, k=pos.k_entry)
        return new
