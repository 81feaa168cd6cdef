"""Structured JSON logs: one event per line on stderr, with the trade key on every line about a trade."""
from __future__ import annotations

import sys
import time
from decimal import Decimal
from typing import IO, Any

import msgspec

_encoder = msgspec.json.Encoder(decimal_format="string")


def _default(obj: Any) -> Any:
    if isinstance(obj, Decimal):
        return str(obj)
    return repr(obj)


_fallback_encoder = msgspec.json.Encoder(enc_hook=_default)


class JsonLogger:
    """Writes `{"ts":..,"level":..,"service":..,"event":..,...fields}` lines."""

    def __init__(self, service: str, stream: IO[str] | None = None) -> None:
        self.service = service
        self._stream = stream or sys.stderr

    def _emit(self, level: str, event: str, fields: dict[str, Any]) -> None:
        record = {"ts": round(time.time(), 3), "level": level, "service": self.service, "event": event, **fields}
        try:
            line = _encoder.encode(record)
        except TypeError:
            line = _fallback_encoder.encode(record)
        self._stream.write(line.decode() + "\n")
        self._stream.flush()

    def info(self, event: str, **fields: Any) -> None:
        """An ordinary decision or fact."""
        self._emit("INFO", event, fields)

    def warning(self, event: str, **fields: Any) -> None:
        """Something unexpected that was handled."""
        self._emit("WARN", event, fields)

    def error(self, event: str, **fields: Any) -> None:
        """Something failed; the fields say what and with which trade."""
        self._emit("ERROR", event, fields)
