"""What the audit trail says, tallied as it is read: signals by outcome, watchdog findings, and the windows in
which coins had no stop. Pure: fed (wall time, message) pairs, no I/O. Wall time is the Redis entry id's time
(when the record was written), so latencies are real seconds whatever the market clock does."""
from __future__ import annotations

from typing import Any

import msgspec

from shared.domain.messages import Alert, Event, Reject

# Buckets (s) of the protection latencies: a stop is placed in tens of milliseconds; seconds are an incident.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
# What the position engine says about a signal it was given -> the outcome label.
_SIGNAL_OUTCOME = {"entry_planned": "traded", "signal_ignored": "ignored", "signal_aborted": "aborted"}


class Histogram(msgspec.Struct):
    """Cumulative bucket counts in Prometheus' shape (the last bucket is +Inf)."""
    buckets: tuple[float, ...] = LATENCY_BUCKETS
    counts: list[int] = msgspec.field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, v: float) -> None:
        """Count one observation of `v` seconds."""
        for i, b in enumerate(self.buckets):
            if v <= b:
                self.counts[i] += 1
        self.counts[-1] += 1
        self.total += v
        self.n += 1


class TradeWindows(msgspec.Struct):
    """One trade's moments without a stop: since the fill until every leg rested, and each stop move."""
    filled_at: float = 0.0
    first_stop_s: float | None = None
    legs_placed: dict[str, float] = {}
    moving: dict[str, float] = {}          # leg -> wall time its stop move was recorded, until done
    worst_s: float = 0.0


class AuditTally(msgspec.Struct):
    """Everything counted from the streams so far."""
    signals: dict[tuple[str, str], int] = {}              # (outcome, reason) -> count
    findings: dict[tuple[str, str], int] = {}             # (check, severity) -> count
    fill_to_first_stop: Histogram = msgspec.field(default_factory=Histogram)
    stop_move: Histogram = msgspec.field(default_factory=Histogram)
    trades: dict[str, TradeWindows] = {}
    last_trade: str = ""

    def feed(self, wall: float, msg: Any) -> None:
        """Count one stream entry written at wall time `wall`."""
        if isinstance(msg, Reject):
            self._count(self.signals, ("rejected", msg.reason))
        elif isinstance(msg, Alert):
            self._count(self.findings, (msg.check, msg.severity))
        elif isinstance(msg, Event):
            self._event(wall, msg)

    def _event(self, wall: float, e: Event) -> None:
        outcome = _SIGNAL_OUTCOME.get(e.kind)
        if outcome is not None:
            self._count(self.signals, (outcome, "" if outcome == "traded" else str(e.data.get("reason", ""))))
        if not e.trade_key:
            return
        if e.kind == "entry_filled":
            self.trades[e.trade_key] = TradeWindows(filled_at=wall)
            self.last_trade = e.trade_key
            self._forget_old()
            return
        tw = self.trades.get(e.trade_key)
        if tw is None:
            return
        leg = str(e.data.get("leg", ""))
        if e.kind == "stop_move":
            tw.moving[leg] = wall
        elif e.kind == "stop_move_window" and leg in tw.moving:
            # The move is done; its `ms` is the time between the old stop's cancel and the new one resting.
            self.stop_move.observe(max(0.0, wall - tw.moving.pop(leg)))
            tw.worst_s = max(tw.worst_s, float(e.data.get("ms", 0)) / 1000)
        elif e.kind == "leg_placed" and leg not in tw.moving:
            self._placed(tw, leg, wall)

    def _placed(self, tw: TradeWindows, leg: str, wall: float) -> None:
        if leg in tw.legs_placed:
            return
        tw.legs_placed[leg] = wall
        took = max(0.0, wall - tw.filled_at)
        if tw.first_stop_s is None:
            tw.first_stop_s = took
            self.fill_to_first_stop.observe(took)
        tw.worst_s = max(tw.worst_s, took)  # the fill's coins were bare until the last leg rested

    def _forget_old(self) -> None:
        # Only the current and the last trades matter for gauges; the histograms keep the rest.
        while len(self.trades) > 4:
            self.trades.pop(next(iter(self.trades)))

    @staticmethod
    def _count(d: dict[tuple[str, str], int], k: tuple[str, str]) -> None:
        d[k] = d.get(k, 0) + 1

    def last_trade_worst(self) -> float:
        """The last filled trade's longest window without a full set of stops (s); 0 before any."""
        tw = self.trades.get(self.last_trade)
        return tw.worst_s if tw is not None else 0.0
