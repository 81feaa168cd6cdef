"""The alert throttle's rule (pure): at most one alert per kind and cause every INVAR_THROTTLE_SEC, a count of
what was held back meanwhile, and a recovery once the cause is gone.

A record is kept per (kind, trade key, cause) while the cause is active:
    {"at": when the last alert went out, "rank": its severity's rank, "held": alerts held back since, "first": ...}
"""
from __future__ import annotations

from typing import Any

import msgspec

SEV_RANK = {"INFO": 0, "WARN": 1, "WARNING": 1, "ERROR": 2, "CRITICAL": 3}


class Record(msgspec.Struct, kw_only=True):
    at: float            # wall time the last alert of this cause was sent
    rank: int            # severity rank of that alert
    held: int = 0        # alerts held back since it
    total_held: int = 0  # alerts held back since the cause first appeared
    first: float = 0.0   # wall time the cause first appeared


class Decision(msgspec.Struct, frozen=True):
    send: bool
    held_back: int       # alerts held back since the previous one sent (reported with this one)
    record: Record


def throttle_key(kind: str, trade_key: str = "", cause: str = "") -> str:
    """The identity of an alert's cause: its kind, the trade it is about and what caused it."""
    return f"{kind}|{trade_key}|{cause}"


def decide(prev: Record | None, now: float, window_sec: float, severity: str) -> Decision:
    """Send the first alert of a cause, the next one only `window_sec` after the last sent (or at once when its
    severity is higher), and hold back (count) the others."""
    rank = SEV_RANK.get(severity.upper(), 0)
    if prev is None:
        return Decision(True, 0, Record(at=now, rank=rank, first=now))
    if now - prev.at < window_sec and rank <= prev.rank and now >= prev.at:
        return Decision(False, prev.held + 1, Record(at=prev.at, rank=prev.rank, held=prev.held + 1,
                                                     total_held=prev.total_held + 1, first=prev.first))
    return Decision(True, prev.held, Record(at=now, rank=rank, total_held=prev.total_held, first=prev.first))


def recovery_details(rec: Record, now: float) -> dict[str, Any]:
    """What a recovery message says about the episode that ended."""
    return {"held_back": rec.held, "held_back_total": rec.total_held, "active_sec": round(max(0.0, now - rec.first), 3)}
