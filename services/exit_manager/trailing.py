"""Moving stops in the position's favour: to break-even after a take-profit, and the swing trailing of the last leg
after TP2 (from AGG_CSV's bars, fails closed when they are missing or stale)."""
from __future__ import annotations

from decimal import Decimal

from services.exit_manager.exchange import ExitExchange
from services.exit_manager.stop_moves import StopMover
from services.exit_manager.store import PositionStore
from shared.adapters.agg_feed import FeedUnavailable, TailCache
from shared.domain.bars import BadHeader
from shared.domain.exit_rules import be_due, be_price, better, trail_candidate, trail_fallback, trail_move
from shared.domain.position import Leg, Position
from shared.domain.symbol import SymbolFilters
from shared.feed_alerts import feed_failed, feed_read
from shared.runtime import Runtime


class BreakEvenTrail:
    """Decides the favourable stop moves; the StopMover carries them out."""

    def __init__(self, rt: Runtime, f: SymbolFilters, store: PositionStore, exchange: ExitExchange,
                 mover: StopMover) -> None:
        self.rt, self.cfg, self.f, self.store, self.exchange, self.mover = rt, rt.cfg, f, store, exchange, mover
        self._feed = TailCache(self.cfg.AGG_CSV, self.cfg.TRAIL_SWING_LOOKBACK)

    def maybe_break_even(self, pos: Position) -> Position | None:
        if pos.be_done or not be_due(pos) or self.rt.clock.now() < pos.be_next_at:
            return None
        target = be_price(pos, self.f.tick_size)
        todo = [lg for lg in pos.legs if lg.status == "PLACED" and better(pos.side, target, lg.stop_price)]
        if todo:
            px = self.exchange.executable(pos.side)
            if px is None:
                return None
            if not better(pos.side, px, target):
                self.rt.event("be_past_market", pos.trade_key, level="warning", be=target, market=px)
                return self.store.request_flatten(pos, "be_immediate")
        for leg in todo:
            pos = self.mover.move(pos, leg.name, target, "break_even") or pos
        if all(lg.status == "DONE" or not better(pos.side, target, lg.stop_price) for lg in pos.legs):
            p = self.store.mutate(pos.trade_key, lambda p: setattr(p, "be_done", True))
            self.rt.event("break_even_done", pos.trade_key, stop=target)
            return p
        return self._be_failed(pos)

    def _be_failed(self, pos: Position) -> Position | None:
        now = self.rt.clock.now()

        def fn(p: Position) -> None:
            p.be_attempts += 1
            if p.be_attempts >= self.cfg.TP1_BE_MAX_ATTEMPTS:
                p.be_attempts, p.be_next_at = 0, now + self.cfg.TP1_BE_COOLDOWN_SEC
        p = self.store.mutate(pos.trade_key, fn)
        self.rt.event("break_even_incomplete", pos.trade_key, level="warning", attempts=p.be_attempts if p else None)
        return p

    def maybe_trail(self, pos: Position) -> None:
        trail = next((lg for lg in pos.legs if lg.name == "trail"), None)
        if trail is None or trail.status != "PLACED" or not self.cfg.TRAIL_ACTIVATE_AFTER_TP2:
            return
        tp2_hit = any(lg.name == "tp2" and lg.status == "DONE" and lg.exit_reason == "tp" for lg in pos.legs)
        if not pos.trailing:
            if not tp2_hit:
                return
            pos = self.store.mutate(pos.trade_key, lambda p: setattr(p, "trailing", True)) or pos
            self.rt.event("trailing_on", pos.trade_key, stop=trail.stop_price)
        now = self.rt.clock.now()
        if now - pos.trail_last_at < self.cfg.TRAIL_UPDATE_EVERY_SEC:
            return
        # The original's activation places the first trailing stop without the TRAIL_STEP_USD test.
        activation = pos.trail_last_at == 0
        pos = self.store.mutate(pos.trade_key, lambda p: setattr(p, "trail_last_at", now)) or pos
        new = self._trail_target(pos, trail, now, activation)
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
        if not feed.bars or now - (feed.bars[-1].ts + 60) > self.cfg.INVAR_FEED_STALE_SEC:
            self.rt.event("trail_feed_stale", pos.trade_key, level="warning",
                          last_bar=feed.bars[-1].ts if feed.bars else None, action="no move")
            return None
        cand = trail_candidate(pos.side, feed.bars, self.cfg.TRAIL_SWING_LR, self.cfg.TRAIL_SWING_BUFFER_USD,
                               self.f.tick_size, pos.k_entry)
        book = self.exchange.book()
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
