"""From one signal to a PENDING position and its entry order, or to a recorded reason why not."""
from __future__ import annotations

import os
import time
from decimal import Decimal

from services.position_engine.sender import EntrySender
from services.position_engine.tracker import EntryTracker
from services.position_engine.writer import PositionWriter
from shared.adapters.agg_feed import FeedUnavailable, read_last_bars
from shared.domain.bars import BadHeader
from shared.domain.entry_rules import pending_position, refusal, side_refusal
from shared.domain.exit_plan import EntryPlan, PlanError, build_plan
from shared.domain.messages import Event, Signal
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime

_swing_cache: dict[tuple, tuple[Decimal, Decimal] | None] = {}


def _feed_key(rt: Runtime) -> tuple:
    st = os.stat(rt.cfg.AGG_CSV)
    return (rt.cfg.AGG_CSV, st.st_ino, st.st_size, st.st_mtime_ns, rt.cfg.SWING_MINS)


def _load_extremes(rt: Runtime, key: tuple) -> tuple[Decimal, Decimal] | None:
    if key not in _swing_cache:
        bars = read_last_bars(rt.cfg.AGG_CSV, rt.cfg.SWING_MINS).bars
        _swing_cache.clear()
        _swing_cache[key] = (min(b.low for b in bars), max(b.high for b in bars)) if bars else None
    return _swing_cache[key]


def warm_swing_cache(rt: Runtime) -> None:
    """Re-read the feed's window when the file changed, from the idle loop: parsing SWING_MINS rows costs a few
    milliseconds, which must not be spent between a signal and its order. Errors are left to the signal path."""
    try:
        _load_extremes(rt, _feed_key(rt))
    except (FeedUnavailable, BadHeader, OSError):
        pass  # reported by swing_extreme() when a signal needs the feed


def swing_extreme(rt: Runtime, side: str) -> Decimal | None:
    """Lowest low (long) / highest high (short) of the last SWING_MINS bars of AGG_CSV; None without a feed.
    Cached per (file identity, size, mtime): the feed grows once a minute, signals may come faster."""
    try:
        ext = _load_extremes(rt, _feed_key(rt))
    except (FeedUnavailable, BadHeader, OSError) as e:
        rt.event("swing_unavailable", level="warning", reason=str(e))
        return None
    return None if ext is None else (ext[0] if side == "long" else ext[1])


class SignalHandler:
    """Gates, plan, claim of the slot, send."""

    def __init__(self, rt: Runtime, f: SymbolFilters, writer: PositionWriter, sender: EntrySender,
                 tracker: EntryTracker) -> None:
        self.rt, self.cfg, self.f = rt, rt.cfg, f
        self.writer, self.sender, self.tracker = writer, sender, tracker

    def on_signal(self, sig: Signal) -> None:
        """Refuse (with a recorded reason) or open a position for one signal."""
        received = time.time()
        state, now, halted = self.rt.load_gate()
        if state.position is not None and state.position.signal_key == sig.key:
            return  # re-delivered after a crash: the position for it already exists
        why = refusal(state, now, halted) or side_refusal(sig.kind, self.cfg.TRADE_MODE)
        if why is not None:
            self._ignore(sig, why)
            return
        plan = self._plan(sig)
        if plan is None:
            return
        pos = pending_position(sig, plan, self.cfg.SYMBOL, self.cfg.ENTRY_MODE, now, time.time())
        planned = Event(service=self.rt.process, kind="entry_planned", at=now, trade_key=pos.trade_key, data=dict(
            side=pos.side, entry=pos.entry_price, qty=pos.qty, sl=pos.sl, tp1=pos.tp1, tp2=pos.tp2, r=pos.r,
            sl_source=plan.sl_source, mode=pos.entry_mode, client_id=pos.entry_client_id, signal_key=sig.key,
            wall_received=received))
        # The audit entry rides in the claim's transaction: one round trip less before the order leaves.
        if not self.writer.claim(pos, now, halted, audit=[(self.cfg.key("events"), planned)]):
            self._ignore(sig, "slot_taken_concurrently")
            return
        sent = self.sender.send(pos)
        self.rt.log.info("entry_planned", trade_key=pos.trade_key, **planned.data)
        self.rt.store.sync_snapshot()
        self.tracker.resume(pos, sent)

    def _ignore(self, sig: Signal, why: str) -> None:
        self.rt.event("signal_ignored", reason=why, signal_key=sig.key, side=sig.kind, price=sig.price)

    def _plan(self, sig: Signal) -> EntryPlan | None:
        c = self.cfg
        try:
            return build_plan(sig.kind, sig.price, self.f, offset=c.ENTRY_OFFSET_USD, qty_usd=c.QTY_USD,
                              sl_pct=c.SL_PCT, r_list=c.TP_R_LIST, swing_extreme=swing_extreme(self.rt, sig.kind))
        except PlanError as e:
            self.rt.event("signal_aborted", level="warning", reason=str(e), signal_key=sig.key, side=sig.kind,
                          price=sig.price)
            self.rt.notify("entry_aborted", f"invalid plan: {e}", "WARN", signal_key=sig.key)
            return None
