"""The one alert throttle (pure), for every process and the watchdog: per kind, trade and cause, each severity
at most once every INVAR_THROTTLE_SEC (a higher severity than the last sent at once), a count of what was held
back meanwhile, and a recovery once the cause is gone. One severity table (SEV_RANK).

A record is kept per (kind, trade key, cause) while the cause is active:
    {"at": when the last alert went out, "rank": its severity's rank, "held": alerts held back since,
     "sent": severity -> when last sent, "first": ...}
"""
from __future__ import annotations

from typing import Any, Iterable, Protocol

import msgspec

# The one severity table of every alert (webhooks of any process, the watchdog's findings).
SEV_RANK: dict[str, int] = {"INFO": 0, "WARN": 1, "WARNING": 1, "ERROR": 2, "CRITICAL": 3}
SEVERITIES = ("INFO", "WARN", "ERROR", "CRITICAL")   # by rank


def severity_name(severity: str) -> str:
    """The canonical name of a severity (WARNING -> WARN; an unknown one counts as INFO)."""
    return SEVERITIES[SEV_RANK.get(severity.upper(), 0)]


class Record(msgspec.Struct, kw_only=True):
    at: float            # wall time the last alert of this cause was sent
    rank: int            # severity rank of that alert
    held: int = 0        # alerts held back since it
    total_held: int = 0  # alerts held back since the cause first appeared
    first: float = 0.0   # wall time the cause first appeared
    sent: dict[str, float] = {}   # severity -> wall time the last alert of that severity was sent


class Decision(msgspec.Struct, frozen=True):
    send: bool
    held_back: int       # alerts held back since the previous one sent (reported with this one)
    record: Record


def throttle_key(kind: str, trade_key: str = "", cause: str = "") -> str:
    """The identity of an alert's cause: its kind, the trade it is about and what caused it."""
    return f"{kind}|{trade_key}|{cause}"


def decide(prev: Record | None, now: float, window_sec: float, severity: str) -> Decision:
    """Send the first alert of a cause; then each severity at most once every `window_sec`, except that a
    severity above the last one sent goes through at once; hold back (count) the others."""
    sev = severity_name(severity)
    rank = SEV_RANK[sev]
    if prev is None:
        return Decision(True, 0, Record(at=now, rank=rank, first=now, sent={sev: now}))
    # A record written before `sent` existed knows only its last alert: that severity's time.
    sent = prev.sent or {SEVERITIES[min(max(prev.rank, 0), 3)]: prev.at}
    escalation = rank > prev.rank and 0 <= now - prev.at < window_sec
    last_same = sent.get(sev)
    if not escalation and last_same is not None and 0 <= now - last_same < window_sec:
        return Decision(False, prev.held + 1, Record(at=prev.at, rank=prev.rank, held=prev.held + 1,
                                                     total_held=prev.total_held + 1, first=prev.first, sent=sent))
    return Decision(True, prev.held, Record(at=now, rank=rank, total_held=prev.total_held, first=prev.first,
                                            sent={**sent, sev: now}))


def recovery_details(rec: Record, now: float) -> dict[str, Any]:
    """What a recovery message says about the episode that ended."""
    return {"held_back": rec.held, "held_back_total": rec.total_held, "active_sec": round(max(0.0, now - rec.first), 3)}


class Alertable(Protocol):
    """What the throttle reads of an alert (a watchdog Finding): its cause and severity."""
    check: str
    trade_key: str
    subject: str
    severity: str


class Throttle:
    """The rule above kept in one JSON-able dict (`state`) that the caller persists: the watchdog's store,
    `{prefix}watchdog:throttle` (the other processes keep one Redis key per cause: shared.adapters.alert_gate).
    Per cause "<check>|<trade_key>|<subject>": "<cause>|<SEV>" -> last sent at, "<cause>" -> [severity, at] of
    the last sent, "<cause>|held" -> [held back since, at]. Entries older than twice the window are pruned; at
    most `max_keys` are kept."""

    def __init__(self, throttle_sec: float, state: dict[str, Any] | None = None, max_keys: int = 5000) -> None:
        self.throttle_sec = throttle_sec
        self.max_keys = max_keys
        self.state: dict[str, Any] = dict(state or {})
        self.released: dict[str, int] = {}  # cause -> alerts held back before the one just let through

    @staticmethod
    def base_key(f: Alertable) -> str:
        """The cause of an alert: its check, trade and subject."""
        return throttle_key(f.check, f.trade_key, f.subject)

    def allow(self, f: Alertable, now: float) -> bool:
        """Whether to send `f` now (`decide`); records the decision, and the count held back in `released`."""
        base = self.base_key(f)
        d = decide(self._record(base), now, self.throttle_sec, f.severity)
        if not d.send:
            self.state[f"{base}|held"] = [d.record.held, now]
            return False
        sev = severity_name(f.severity)
        self.state[f"{base}|{sev}"] = now
        self.state[base] = [sev, now]
        self.state.pop(f"{base}|held", None)
        self.released[base] = d.held_back
        return True

    def _record(self, base: str) -> Record | None:
        last = self.state.get(base)
        if last is None:
            return None
        held = self.state.get(f"{base}|held") or [0, 0]
        sent = {s: float(self.state[f"{base}|{s}"]) for s in SEVERITIES if f"{base}|{s}" in self.state}
        return Record(at=float(last[1]), rank=SEV_RANK.get(str(last[0]), 0), held=int(held[0]), sent=sent)

    def take_held(self, base: str) -> int:
        """End a cause's episode: the alerts held back since its last one (0 when none)."""
        return int((self.state.pop(f"{base}|held", None) or [0])[0])

    def filter(self, alerts: Iterable[Alertable], now: float) -> list[Any]:
        """The alerts to send now (pruning old entries first)."""
        self.prune(now)
        return [f for f in alerts if self.allow(f, now)]

    def prune(self, now: float) -> None:
        """Drop entries older than twice the window; cap the size (oldest first)."""
        horizon = 2 * self.throttle_sec
        self.state = {k: v for k, v in self.state.items() if now - _at(v) < horizon}
        if len(self.state) > self.max_keys:
            keep = sorted(self.state.items(), key=lambda kv: _at(kv[1]))[-self.max_keys:]
            self.state = dict(keep)


def _at(v: Any) -> float:
    return float(v[1]) if isinstance(v, list) else float(v)
