"""From one signal to a PENDING position and its entry order, or to a recorded reason why not."""
from __future__ import annotations

import time
from decimal import Decimal

from services.position_engine.commands import adopt_halt
from services.position_engine.plan_inputs import BasisUnavailable, FeedMissing, PlanInputs
from services.position_engine.sender import EntrySender
from services.position_engine.tracker import EntryTracker
from services.position_engine.writer import PositionWriter
from shared.domain.entry_rules import pending_position, refusal, side_refusal
from shared.domain.exit_plan import EntryPlan, PlanError, build_plan, round_trip_fees
from shared.domain.messages import Event, Signal
from shared.domain.signal_checks import deviation, deviation_refusal, stale_refusal
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime

class SignalHandler:
    """Gates, plan, claim of the slot, send."""

    def __init__(self, rt: Runtime, f: SymbolFilters, writer: PositionWriter, sender: EntrySender,
                 tracker: EntryTracker, inputs: PlanInputs) -> None:
        self.rt, self.cfg, self.f = rt, rt.cfg, f
        self.writer, self.sender, self.tracker, self.inputs = writer, sender, tracker, inputs

    def on_signal(self, sig: Signal) -> None:
        """Refuse (with a recorded reason) or open a position for one signal."""
        received = time.time()
        state, now, halted = self.rt.load_gate()
        if state.position is not None and state.position.signal_key == sig.key:
            return  # re-delivered after a crash: the position for it already exists
        stale = stale_refusal(sig.ts, now, self.cfg.MAX_PEAK_AGE_SEC)
        if stale is not None:   # read too late (the engine was down or busy): never acted on, as the original
            self._ignore(sig, stale, age_sec=round(now - sig.ts, 1), max_age_sec=self.cfg.MAX_PEAK_AGE_SEC)
            return
        why = refusal(state, now, halted) or side_refusal(sig.kind, self.cfg.TRADE_MODE)
        if why is not None:
            self._ignore(sig, why)
            if halted and state.halt is None:
                adopt_halt(self.rt)   # a halt set outside the engine (the watchdog's I13): into the snapshot too
            return
        if not self._on_book(sig, now):
            return
        plan = self._plan(sig)
        if plan is None:
            return
        fees = round_trip_fees(plan.entry_price, plan.tp1, plan.qty, self.inputs.fee_rate)
        if fees[0] < fees[1] and self.cfg.SKIP_TP1_BELOW_FEES:
            self._below_fees(sig, plan, *fees)
            self._abort(sig, f"tp1_below_fees (gain {fees[0]:.4f} < fees {fees[1]:.4f}, SKIP_TP1_BELOW_FEES=true)")
            return
        pos = pending_position(sig, plan, self.cfg.SYMBOL, self.cfg.ENTRY_MODE, now, time.time())
        planned = Event(service=self.rt.process, kind="entry_planned", at=now, trade_key=pos.trade_key, data=dict(
            side=pos.side, entry=pos.entry_price, qty=pos.qty, sl=pos.sl, tp1=pos.tp1, tp2=pos.tp2, r=pos.r,
            sl_source=plan.sl_source, k=plan.k, feed_entry=plan.feed_entry, feed_sl=plan.feed_sl,
            feed_tp1=plan.feed_tp1, feed_tp2=plan.feed_tp2, mode=pos.entry_mode, client_id=pos.entry_client_id, signal_key=sig.key,
            wall_received=received))
        # The audit entry rides in the claim's transaction: one round trip less before the order leaves.
        if not self.writer.claim(pos, now, halted, audit=[(self.cfg.key("events"), planned)]):
            self._ignore(sig, "slot_taken_concurrently")
            return
        sent = self.sender.send(pos)
        self.rt.log.info("entry_planned", trade_key=pos.trade_key, **planned.data)
        if fees[0] < fees[1]:
            self._below_fees(sig, plan, *fees, trade_key=pos.trade_key)   # said after the order left: off its path
        self.rt.store.sync_snapshot()
        self.tracker.resume(pos, sent)

    def _ignore(self, sig: Signal, why: str, **data: object) -> None:
        self.rt.event("signal_ignored", reason=why, signal_key=sig.key, side=sig.kind, price=sig.price, **data)

    def _on_book(self, sig: Signal, now: float) -> bool:
        """False (and the signal ignored, or aborted when the book cannot be read) when the signal re-priced by k
        is further than MAX_SIGNAL_DEVIATION_PCT from SYMBOL's mid: another market, instrument or a stuck feed."""
        try:
            k, mid = self.inputs.market(now)
        except BasisUnavailable as e:
            self._abort(sig, str(e))
            return False
        why = deviation_refusal(sig.price, k, mid, self.cfg.MAX_SIGNAL_DEVIATION_PCT)
        if why is not None:
            dev = deviation(sig.price, k, mid).quantize(Decimal("1e-6")) if mid > 0 else None
            self._ignore(sig, why, k=k, book_mid=mid, deviation=dev, max_deviation=self.cfg.MAX_SIGNAL_DEVIATION_PCT)
            return False
        return True

    def _plan(self, sig: Signal) -> EntryPlan | None:
        c = self.cfg
        try:
            plan = build_plan(sig.kind, sig.price, self.f, offset=c.ENTRY_OFFSET_USD, qty_usd=c.QTY_USD,
                              sl_pct=c.SL_PCT, r_list=c.TP_R_LIST, k=self.inputs.k(),
                              swing_extreme=self.inputs.extreme(sig.kind, sig.ts), gap_ticks=c.SL_LIMIT_GAP_TICKS)
        except (PlanError, BasisUnavailable, FeedMissing) as e:
            self._abort(sig, str(e))
            return None
        return plan

    def _abort(self, sig: Signal, why: str) -> None:
        self.writer.lock(self.rt.clock.now())
        self.rt.event("signal_aborted", level="warning", reason=why, signal_key=sig.key, side=sig.kind,
                      price=sig.price, lock_sec=self.cfg.LOCK_SEC)
        self.rt.notify("entry_aborted", f"invalid plan: {why}", "WARN", signal_key=sig.key)

    def _below_fees(self, sig: Signal, plan: EntryPlan, gain: Decimal, fees: Decimal, trade_key: str = "") -> None:
        """An event and an alert: TP1's gain does not pay the round trip's commission (the signal is skipped only
        with SKIP_TP1_BELOW_FEES)."""
        skip = self.cfg.SKIP_TP1_BELOW_FEES
        q = self.f.tick_size / 100
        self.rt.event("plan_below_fees", trade_key, level="warning", signal_key=sig.key, side=sig.kind,
                      entry=plan.entry_price, tp1=plan.tp1, qty=plan.qty, tp1_gain=gain.quantize(q),
                      round_trip_fees=fees.quantize(q), fee_rate=self.inputs.fee_rate, fee_source=self.inputs.fee_source,
                      skipped=skip)
        self.rt.notify("plan_below_fees", f"TP1 gain {gain:.4f} < round-trip fees {fees:.4f}"
                       + ("; signal skipped" if skip else ""), "WARN", trade_key, signal_key=sig.key)
