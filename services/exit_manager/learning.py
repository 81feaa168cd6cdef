"""Learning what the exchange did with the legs, terminal first: the `orders` stream's records, REST as the
budgeted fallback; settling each leg's attempt, re-protecting a partial take-profit, a stop gapped through."""
from __future__ import annotations

import time

import msgspec

from services.exit_manager.counting import LegCounter
from services.exit_manager.exchange import TickAborted
from services.exit_manager.parts import Part, Parts
from shared.adapters.binance_rest import RateLimited, UnknownOutcome
from shared.domain import transitions as tr
from shared.domain.exit_rules import (
    immediate_reason,
    leg_ids,
    remaining,
    oco_stop_lost,
    read_attempt,
    rest_learn_reason,
    stream_view,
)
from shared.domain.exit_decide import ExitView, expired_stop
from shared.domain.exit_watch import (
    GraceReset,
    GraceStarted,
    RecheckStop,
    StopFilling,
    StopGapped,
    gap_watched,
    stop_gap,
)
from shared.domain.orders import Order, expired_by_exchange, order_is_open
from shared.domain.position import Leg, LegStatus, Position


NOT_FOUND_GRACE_SEC = 3.0
STARVED_LOG_SEC = 10.0  # a REST budget that refuses every other tick is one log line per this, not one per tick


class FillLearner(Part):
    """The learning step of a tick: what the exchange did with the resting legs, counted into them."""

    def __init__(self, p: Parts, counter: LegCounter) -> None:
        super().__init__(p)
        self.counter = counter
        self._starved_logged = 0.0     # monotonic: the last `rest_budget_exhausted` line (one per STARVED_LOG_SEC)
        self.replay_point = False      # lock-step replay: a new market point, the tick reads the exchange's truth
        self._passed_since: dict[str, float] = {}   # stop client id -> stack time its limit was first seen passed

    def learn(self, pos: Position) -> Position | None:
        """Settle what the exchange's records say of each resting leg; the position afterwards (None: gone)."""
        if not any(leg.status == LegStatus.PLACED for leg in pos.legs):
            return pos  # nothing resting to learn about
        open_, reason = self._rest_read(pos)
        for leg in pos.legs:
            if leg.status != LegStatus.PLACED:
                continue
            if open_ is None:  # the stream's records only; an order it never reported waits for REST
                known = stream_view(leg, self.feed.records)
                if known is None:
                    continue
            else:
                ids = [i for i in (leg.tp_client_id, leg.stop_client_id) if i]
                if all(i in open_ and self.feed.final(i) is None for i in ids):
                    self._check_gap(pos, leg, open_[leg.stop_client_id], fresh=True)
                    continue
                orders = {i: self.feed.final(i) or open_.get(i) or self.exchange.query(i, poll=reason) for i in ids}
                if any(o is None for o in orders.values()) and time.time() - leg.placed_at < NOT_FOUND_GRACE_SEC:
                    continue  # -2013 right after placing is not proof of absence
                known = {k: v for k, v in orders.items() if v is not None}
            fills = read_attempt(leg, known)
            if fills.open:
                if fills.triggered_stop is not None:
                    self._check_gap(pos, leg, fills.triggered_stop)
                elif oco_stop_lost(leg, known):
                    pos = self._reprotect(pos, leg) or pos
                continue
            pos = self.counter.settle(pos, leg.name, leg.attempt, fills, "stream" if open_ is None else "rest") or pos
            self._check_expired(pos, leg.name, [known.get(leg.stop_client_id), known.get(leg.tp_client_id)])
        return self.store.pos()

    def _rest_reason(self, pos: Position, wall: float) -> str | None:
        """Why a REST read of the open orders is due now (and the budget allows it), or None."""
        if self.cfg.REPLAY_LOCKSTEP:
            # Lock-step replay: the exchange's truth once at every market point (a stop gapped through is seen at
            # the same point at any speed), never on wall-time cadences or a wall-minute budget.
            due, self.replay_point = self.replay_point, False
            return "replay_point" if due else None
        reason = rest_learn_reason(stream_ok=self.feed.stream_ok(), now=wall, last_rest=self.feed.last_rest,
                                   expect_since=self.feed.expect_since(), sweep_sec=self.cfg.EXIT_REST_SWEEP_SEC)
        if reason is None:
            return None
        weight = self.feed.open_orders_weight
        if not self.feed.budget.take(weight, wall):
            if time.monotonic() - self._starved_logged >= STARVED_LOG_SEC:
                self._starved_logged = time.monotonic()
                self.rt.log.warning("rest_budget_exhausted", trade_key=pos.trade_key, reason=reason,
                                    budget_per_min=self.feed.budget.per_min, ip_used=self.client.used_weight,
                                    wait_sec=round(self.feed.budget.wait_sec(weight, wall), 2))
            return None
        return reason

    def _rest_read(self, pos: Position) -> tuple[dict[str, Order] | None, str]:
        """The exchange's open orders by REST when a read is due and the budget allows it, else (None, "")."""
        wall = time.time()
        reason = self._rest_reason(pos, wall)
        if reason is None:
            return None, ""
        weight = self.feed.open_orders_weight
        self.feed.polled(reason, weight)
        try:
            orders = self.client.open_orders(self.cfg.SYMBOL)
        except (UnknownOutcome, RateLimited) as e:
            raise TickAborted(str(e)) from None
        finally:
            self.feed.budget.note_ip_usage(self.client.used_weight, time.time())
        self.feed.last_rest = wall
        self.feed.expect.clear()  # what they were owed, REST now tells (or the queries that follow)
        for o in orders:
            self.feed.note(o)
        return {o.client_order_id: o for o in orders}, reason

    def _reprotect(self, pos: Position, leg: Leg) -> Position | None:
        """The take-profit of an OCO partially filled and the exchange expired its stop: cancel the rest of the
        take-profit and place a new OCO (take-profit + stop) for what is really held. While the market is still at
        or beyond the take-profit a new LIMIT_MAKER would be refused, and the take-profit keeps filling: wait."""
        px = self.exchange.executable(pos.side)
        if px is None or immediate_reason(pos.side, leg, px):
            self.rt.log.info("tp_partial_wait", trade_key=pos.trade_key, leg=leg.name, market=str(px))
            return None
        self.exchange.cancel_old(leg_ids(pos.trade_key, leg.name, leg.attempt))
        orders = {i: self.exchange.query(i) for i in (leg.tp_client_id, leg.stop_client_id)}
        fills = read_attempt(leg, {k: v for k, v in orders.items() if v is not None})
        if fills.open:
            raise TickAborted(f"{leg.name}: take-profit still open after cancel")
        self.rt.event("leg_reprotect", pos.trade_key, level="warning", leg=leg.name, attempt=leg.attempt,
                      filled=fills.qty, reason="oco stop expired after a partial take-profit")
        return self.counter.settle(pos, leg.name, leg.attempt, fills)

    def _check_expired(self, pos: Position, name: str, orders: list[Order | None]) -> None:
        """The exchange expired a leg's stop (price range rule, or self-trade prevention on its take-profit, whose
        OCO takes the stop along) and the leg still holds coins: it is a leg without a stop. Say so (event +
        alert); `expired_stop` decides whether the leg, back to NEW, is placed again or, the market being already
        past the stop, the position is flattened."""
        leg = next((lg for lg in pos.legs if lg.name == name), None)
        gone = [o for o in orders if o is not None and expired_by_exchange(o.status)]
        if leg is None or leg.status != LegStatus.NEW or not gone:
            return
        cause = next((o for o in gone if o.expiry_reason != "OCO_TRIGGER"), gone[0])   # not the sibling's echo
        reason = cause.expiry_reason or cause.status
        px = self.exchange.executable(pos.side)
        action = expired_stop(pos.side, leg.stop_price, px)
        level, severity = ("error", "CRITICAL") if action == "flatten" else ("warning", "WARN")
        self.rt.event("stop_expired", pos.trade_key, level=level, leg=name, status=cause.status,
                      client_id=cause.client_order_id, expiry_reason=reason, stop=leg.stop_price, market=px,
                      qty=remaining(leg), action=action)
        self.rt.notify("stop_expired", f"{name}: the exchange expired the leg's orders ({reason}), it has no stop "
                       f"at {leg.stop_price}; {'flattening at market' if action == 'flatten' else 'placing it again'}",
                       severity, pos.trade_key, cause=reason)
        if action == "flatten":
            self.store.request_flatten(pos, "stop_expired")
        else:   # without a stop from now: a refused re-placement gets SL_WATCHDOG_RETRY_SEC (stop_lost_refused)
            self.store.mutate_leg(pos.trade_key, name, tr.stop_lost, self.rt.clock.now())

    def _check_gap(self, pos: Position, leg: Leg, stop: Order, fresh: bool = False) -> None:
        """A triggered stop-limit whose limit the market has gapped through rests unfilled: close the rest at market
        (`exit_watch.stop_gap` decides; SL_WATCHDOG_GRACE_SEC).

        A stop crossed on the way down is reported triggered (open, working) an instant before its fill, with the
        market already past its limit: that record alone is no gap. Unless `stop` comes from the open-orders read
        just made (`fresh`), the exchange is asked again, and only a stop still resting unfilled is a gap. The
        grace's start is kept in memory: after a restart it starts again (a later close, never an earlier one)."""
        if not gap_watched(stop):
            return
        view = ExitView(executable=self.exchange.executable(pos.side))
        cid, now = stop.client_order_id, self.rt.clock.now()
        while True:
            acts = stop_gap(pos.side, stop, view, self._passed_since.get(cid), now,
                            self.cfg.SL_WATCHDOG_GRACE_SEC, fresh)
            for a in acts:
                if isinstance(a, GraceReset):
                    self._passed_since.pop(cid, None)   # back on the safe side: the grace starts again
                elif isinstance(a, GraceStarted):
                    # a log line, not an event: an ordinary stop-out shows the same record an instant
                    self._passed_since[cid] = a.at
                    self.rt.log.info("sl_watchdog_trigger", trade_key=pos.trade_key, leg=leg.name,
                                     limit=str(stop.price), market=str(view.executable),
                                     grace_sec=self.cfg.SL_WATCHDOG_GRACE_SEC)
                elif isinstance(a, StopFilling):
                    return  # it filled (or is filling): the next learn settles it
                elif isinstance(a, StopGapped):
                    self.rt.event("stop_gapped", pos.trade_key, level="error", leg=leg.name, limit=stop.price,
                                  market=view.executable, passed_sec=a.passed_sec,
                                  grace_sec=self.cfg.SL_WATCHDOG_GRACE_SEC)
                    self.store.request_flatten(pos, "stop_gapped")
            if not acts or not isinstance(acts[-1], RecheckStop):
                return
            view = msgspec.structs.replace(view, stop_resting=self._still_resting(pos, leg, cid))

    def _still_resting(self, pos: Position, leg: Leg, cid: str) -> bool:
        """The stop asked again: still open and working (not filled, not filling)."""
        now = self.exchange.query(cid)
        if now is None or not order_is_open(now) or not now.is_working:
            self.rt.log.info("stop_triggered_then_filled", trade_key=pos.trade_key, leg=leg.name,
                             status=now.status if now is not None else None)
            return False
        return True
