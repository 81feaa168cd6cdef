"""Moving stops in the position's favour, as shared/domain/exit_decide.py decides them: to break-even after TP1,
and the swing trailing of the last leg after TP2 (from AGG_CSV's bars, fails closed when they are missing or
stale)."""
from __future__ import annotations

from decimal import Decimal

import msgspec

from services.exit_manager.parts import Part, Parts
from services.exit_manager.stop_moves import StopMover
from shared.adapters.agg_feed import FeedUnavailable, TailCache
from shared.domain import transitions as tr
from shared.domain.bars import BadHeader
from shared.domain.exit_decide import (
    EvaluateTrail,
    ExitView,
    MoveStop,
    RequestFlatten,
    SettleBreakEven,
    StartTrailing,
    break_even,
    break_even_pending,
    break_even_reached,
    trailing,
)
from shared.domain.exit_rules import be_price
from shared.domain.exit_watch import ReadBook, TrailFeedStale, trail_target
from shared.domain.position import Leg, Position
from shared.feed_alerts import feed_failed, feed_read


class FavourMoves(Part):
    """Carries out the favourable stop moves that shared/domain/exit_decide.py decides (break-even, trailing);
    the StopMover moves the stops."""

    def __init__(self, p: Parts, mover: StopMover) -> None:
        super().__init__(p)
        self.mover = mover
        self._feed = TailCache(self.cfg.AGG_CSV, self.cfg.TRAIL_SWING_LOOKBACK)

    def maybe_break_even(self, pos: Position) -> Position | None:
        """Act on `exit_decide.break_even`; the position afterwards (None: nothing done)."""
        now = self.rt.clock.now()
        px = self.exchange.executable(pos.side) if break_even_pending(pos, self.f.tick_size, now) else None
        actions = break_even(pos, ExitView(executable=px), self.f.tick_size, now)
        result = None
        for a in actions:
            if isinstance(a, RequestFlatten):
                self.rt.event("be_past_market", pos.trade_key, level="warning", be=be_price(pos, self.f.tick_size),
                              market=px)
                return self.store.request_flatten(pos, a.reason)
            if isinstance(a, MoveStop):
                pos = self.mover.move(pos, a.leg, a.stop, a.why) or pos
            elif isinstance(a, SettleBreakEven):
                result = self._settle(pos, a.stop)
        return result

    def _settle(self, pos: Position, stop: Decimal) -> Position | None:
        if break_even_reached(pos, stop):
            p = self.store.mutate(pos.trade_key, tr.break_even_done)
            self.rt.event("break_even_done", pos.trade_key, stop=stop)
            return p
        p = self.store.mutate(pos.trade_key, tr.break_even_failed, self.rt.clock.now(), self.cfg.TP1_BE_MAX_ATTEMPTS,
                              self.cfg.TP1_BE_COOLDOWN_SEC)
        self.rt.event("break_even_incomplete", pos.trade_key, level="warning", attempts=p.be_attempts if p else None)
        return p

    def maybe_trail(self, pos: Position) -> None:
        """Act on `exit_decide.trailing`."""
        now = self.rt.clock.now()
        for a in trailing(pos, self.cfg, now):
            if isinstance(a, StartTrailing):
                pos = self.store.mutate(pos.trade_key, tr.trailing_started) or pos
                self.rt.event("trailing_on", pos.trade_key,
                              stop=next(lg for lg in pos.legs if lg.name == "trail").stop_price)
            elif isinstance(a, EvaluateTrail):
                pos = self.store.mutate(pos.trade_key, tr.trail_evaluated, now) or pos
                trail = next(lg for lg in pos.legs if lg.name == "trail")
                new = self._trail_target(pos, trail, now, a.activation)
                if new is not None:
                    self.mover.move(pos, "trail", new, "trailing")

    def _trail_target(self, pos: Position, trail: Leg, now: float, activation: bool = False) -> Decimal | None:
        try:
            feed = self._feed.read()   # new rows parsed once (TailCache), not the whole lookback at every move
        except BadHeader as e:
            feed_failed(self.rt, "feed_bad_header", str(e), pos.trade_key, "trail_", action="no move")
            return None
        except FeedUnavailable as e:
            feed_failed(self.rt, "feed_missing", str(e), pos.trade_key, "trail_", action="no move")
            return None
        feed_read(self.rt, feed, pos.trade_key, "trail_")
        view = ExitView(bars=tuple(feed.bars))
        acts = trail_target(pos, trail, view, self.cfg, self.f.tick_size, now, activation)
        if acts and isinstance(acts[0], ReadBook):
            book = self.exchange.book()
            if book is None:
                return None
            acts = trail_target(pos, trail, msgspec.structs.replace(view, book=book), self.cfg, self.f.tick_size, now,
                                activation)
        a = acts[0]
        if isinstance(a, TrailFeedStale):
            self.rt.event("trail_feed_stale", pos.trade_key, level="warning", last_bar=a.last_bar, action="no move")
            return None
        self.rt.event("trail_eval", pos.trade_key, current=trail.stop_price, candidate=a.candidate, source=a.source,
                      market=a.market, move_to=a.move_to, activation=activation, k=pos.k_entry)
        return a.move_to
