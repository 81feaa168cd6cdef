"""What a refused leg means: coins gone from the account (-2010: the manual-close watch books them), a stop that
would trigger at once (the nearest price or a flatten, STOP_IMMEDIATE_ACTION), a take-profit that would match at
once (a flatten), or an ordinary refusal counted towards the retry and FAILSAFE_FLATTEN. The decision is
`exit_watch.leg_refused`; this part reads the market it needs and writes the outcome."""
from __future__ import annotations

from decimal import Decimal

from services.exit_manager.manual_close import ManualCloseWatch
from services.exit_manager.parts import Part, Parts
from shared.adapters.binance_rest import Rejected
from shared.domain import transitions as tr
from shared.domain.exit_decide import ExitView, RequestFlatten, refused_retry_sec, stop_lost_refused
from shared.domain.exit_rules import failsafe_due, remaining
from shared.domain.exit_watch import StopNearest, leg_refused, nearest_move, refusal_reason
from shared.domain.position import Leg, Position


class LegRefusals(Part):
    """Carries out what a leg's refusal means; the placer hands each refusal here."""

    def __init__(self, p: Parts, manual: ManualCloseWatch) -> None:
        super().__init__(p)
        self.manual = manual

    def refused(self, pos: Position, leg: Leg, e: Rejected) -> Position | None:
        """A refused leg: coins gone (-2010, booked as a manual close), else what `exit_watch.leg_refused` decides
        from the market: the nearest stop, a flatten, or a counted refusal."""
        if e.code == -2010 and self.manual.coins_missing(pos):
            return self.store.pos()
        why = refusal_reason(pos.side, leg, ExitView(executable=self.exchange.executable(pos.side)), e.msg)
        nearest, px = None, None
        if why == "stop_immediate" and self.cfg.STOP_IMMEDIATE_ACTION == "nearest":
            # the market read again: the stop goes next to where it is now
            px = self.exchange.executable(pos.side)
            nearest = nearest_move(pos.side, leg, ExitView(executable=px), self.f.tick_size,
                                   self.cfg.SL_LIMIT_GAP_TICKS)
        a = leg_refused(why, nearest, self.cfg.STOP_IMMEDIATE_ACTION)
        if isinstance(a, StopNearest):
            p = self._stop_at_nearest(pos, leg, e, a, px)
            if p is not None:
                return p
            a = RequestFlatten(why)
        if isinstance(a, RequestFlatten):
            self.rt.event("leg_would_trigger", pos.trade_key, level="warning", leg=leg.name, error=e.msg, reason=why,
                          stop=leg.stop_price, tp=leg.tp_price, action="flatten at market")
            return self.store.request_flatten(pos, a.reason)
        return self._count_rejection(pos, leg, e)

    def _stop_at_nearest(self, pos: Position, leg: Leg, e: Rejected, a: StopNearest, px: Decimal) -> Position | None:
        """STOP_IMMEDIATE_ACTION=nearest: the leg's stop moves to the closest price on the losing side of the market
        that does not trigger now; the next tick places it."""
        p = self.store.mutate_leg(pos.trade_key, leg.name, tr.stop_set_nearest, a.stop, a.limit)
        self.rt.event("leg_would_trigger", pos.trade_key, level="warning", leg=leg.name, error=e.msg,
                      reason="stop_immediate", stop=leg.stop_price, tp=leg.tp_price, stop_to=a.stop, limit_to=a.limit,
                      market=px, action="stop placed at the nearest price that does not trigger")
        self.rt.notify("stop_nearest", f"{leg.name}: stop {leg.stop_price} would trigger at once (market {px}); "
                       f"placed at {a.stop} instead", "WARN", pos.trade_key, cause=leg.name)
        return p

    def _count_rejection(self, pos: Position, leg: Leg, e: Rejected) -> Position | None:
        now = self.rt.clock.now()
        wait = refused_retry_sec(leg.stop_lost_at, self.cfg.EXITS_RETRY_EVERY_SEC, self.cfg.SL_WATCHDOG_RETRY_SEC)
        p = self.store.mutate_leg(pos.trade_key, leg.name, tr.leg_rejected, now, wait)
        tries = p.exits_tries if p else pos.exits_tries + 1
        self.rt.event("leg_rejected", pos.trade_key, level="error", leg=leg.name, code=e.code, error=e.msg, tries=tries,
                      retry_in=wait, stop_lost_at=leg.stop_lost_at or None)
        self.rt.notify("exits_error", f"{leg.name} rejected: {e.code} {e.msg}", "ERROR", pos.trade_key,
                       cause=leg.name)
        if p is not None and self._stop_lost_for_good(p, leg.name, now):
            return self.store.request_flatten(p, "stop_expired")
        if p is not None and self.cfg.FAILSAFE_FLATTEN and failsafe_due(
                tries=tries, max_tries=self.cfg.FAILSAFE_EXITS_MAX_TRIES, first_error_at=p.exits_first_error_at,
                now=now, grace_sec=self.cfg.FAILSAFE_EXITS_GRACE_SEC):
            return self.store.request_flatten(p, "failsafe")
        return p

    def _stop_lost_for_good(self, pos: Position, name: str, now: float) -> bool:
        """A leg whose stop the exchange expired and whose re-placement was refused too long or too often
        (exit_decide.stop_lost_refused): say so (event + CRITICAL alert); the caller flattens."""
        leg = next(lg for lg in pos.legs if lg.name == name)
        if not stop_lost_refused(leg.stop_lost_at, leg.stop_lost_refusals, now, self.cfg.SL_WATCHDOG_RETRY_SEC,
                                 self.cfg.FAILSAFE_EXITS_MAX_TRIES):
            return False
        self.rt.event("stop_lost_flatten", pos.trade_key, level="error", leg=name, since=leg.stop_lost_at,
                      unprotected_sec=round(now - leg.stop_lost_at, 3), refusals=leg.stop_lost_refusals,
                      qty=remaining(leg), action="flatten at market")
        self.rt.notify("stop_expired", f"{name}: the exchange expired its stop and refused a new one "
                       f"{leg.stop_lost_refusals} time(s) over {round(now - leg.stop_lost_at, 1)} s; flattening at "
                       "market", "CRITICAL", pos.trade_key, cause="replacement_refused")
        return True
