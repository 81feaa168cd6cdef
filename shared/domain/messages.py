"""Typed, versioned stream messages. Each is stored as fields `type` (the tag) and `data` (JSON)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec

from shared.domain.position import Position


class Signal(msgspec.Struct, tag="signal", kw_only=True):
    """A validated PEAK signal, published by signal_ingest to the `signals` stream."""
    v: int = 1
    key: str                      # stable dedup key: action|ts_minute|kind|price_rounded
    ts: float                     # event time (epoch s) from the line's `ts`
    kind: Literal["long", "short"]
    price: Decimal
    delta: Decimal | None = None
    vol: Decimal | None = None
    imb: Decimal | None = None
    source: str = "DeltaScout"
    offset: int = 0               # byte offset of the line in deltascout.log
    read_at: float = 0.0          # when ingest read it (clock time)


class Reject(msgspec.Struct, tag="reject", kw_only=True):
    """A log line that did not become a signal, with the reason; nothing is dropped silently."""
    v: int = 1
    reason: str                   # bad_json | schema | not_peak | wrong_source | stale | duplicate | too_long | ...
    detail: str = ""
    offset: int = 0
    line: str = ""                # the line (truncated) for the operator
    read_at: float = 0.0


PositionKind = Literal["ENTRY_PLACED", "ENTRY_FILLED", "ENTRY_ABORTED", "CLOSED"]


class PositionEvent(msgspec.Struct, tag="position", kw_only=True):
    """A hand-over or lifecycle event on the `positions` stream."""
    v: int = 1
    kind: PositionKind
    trade_key: str
    at: float
    detail: dict[str, Any] = {}


class Event(msgspec.Struct, tag="event", kw_only=True):
    """One line of the audit trail (`events` stream): a decision or an exchange call."""
    v: int = 1
    service: str
    kind: str
    at: float
    trade_key: str = ""
    data: dict[str, Any] = {}


CommandName = Literal["halt", "resume", "cancel_entry", "flatten"]


class Command(msgspec.Struct, tag="command", kw_only=True):
    """An operator command on the `commands` stream. v2 (issue 21): `trade_key` (flatten, cancel_entry) and
    `expires_at` (stack clock); `by` is the Redis ACL user that wrote it. A v1 entry decodes with no target
    and no expiry, and shared.domain.commands.command_refusal refuses it."""
    v: int = 2
    cmd: CommandName
    at: float
    by: str = "operator"
    reason: str = ""
    trade_key: str = ""           # the trade the command is for (flatten, cancel_entry)
    expires_at: float = 0.0       # stack clock (epoch s); 0 = written before v2: refused as expired


class Alert(msgspec.Struct, tag="alert", kw_only=True):
    """A watchdog finding on the `alerts` stream."""
    v: int = 1
    check: str                    # I1..I13, HB (heartbeat), ...
    severity: Literal["INFO", "WARN", "ERROR", "CRITICAL"]
    message: str
    at: float
    trade_key: str = ""
    details: dict[str, Any] = {}


from shared.domain.order_updates import ListUpdate, OrderUpdate  # noqa: E402  (the `orders` stream, by user_stream)

StreamMessage = Signal | Reject | PositionEvent | Event | Command | Alert | OrderUpdate | ListUpdate


def handed_over_position(msg: object) -> Position | None:
    """The position an ENTRY_FILLED event hands to the exit manager, or None (another event, or one written before
    the event carried it)."""
    if not isinstance(msg, PositionEvent) or msg.kind != "ENTRY_FILLED" or "position" not in msg.detail:
        return None
    return msgspec.convert(msg.detail["position"], Position, strict=False)
