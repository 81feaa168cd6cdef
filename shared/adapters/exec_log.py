"""EXEC_LOG (the original's executor.log): the audit trail as a readable file of JSON lines, the last LOG_MAX_LINES.

One writer (the watchdog, once a second) follows the `events` stream, so several processes never race on the
file. Each line is {"ts", "source", "action", "trade_key", ...data, "id"}; `id` is the stream entry's, which
lets a restarted writer continue after the last line it wrote (nothing twice, nothing skipped while the entry
is still in the stream). With LOG_MAX_LINES > 0 the file is rewritten atomically (temp file + rename) holding the
newest lines; 0 keeps everything (append only), as in the original.
"""
from __future__ import annotations

import json
import os
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import redis

from shared.adapters.agg_feed import read_tail_lines
from shared.adapters.redis_streams import decode_fields
from shared.domain.messages import Event


def line_of(entry_id: str, ev: Event) -> str:
    """One compact JSON line for an event (money stays a string, as on the stream)."""
    doc: dict[str, Any] = {"ts": datetime.fromtimestamp(ev.at, tz=UTC).isoformat(timespec="milliseconds"),
                           "source": ev.service, "action": ev.kind}
    if ev.trade_key:
        doc["trade_key"] = ev.trade_key
    doc.update({k: v for k, v in ev.data.items() if k not in ("ts", "source", "action", "id")})
    doc["id"] = entry_id
    return json.dumps(doc, default=str, separators=(",", ":"))


class ExecLog:
    """Follows `{prefix}events` into EXEC_LOG, keeping at most `max_lines` (0 = all)."""

    def __init__(self, r: redis.Redis, stream: str, path: str, max_lines: int) -> None:
        self.r, self.stream, self.path, self.max_lines = r, stream, Path(path), max_lines
        self.lines: deque[str] = deque(maxlen=max_lines or None)
        self.last_id = "0-0"
        self._loaded = False

    def _load(self) -> None:
        """Continue after the file's last line (its stream id); keep its tail when trimming."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.path.exists():
            tail = read_tail_lines(self.path, self.max_lines or 1)
            if self.max_lines:
                self.lines.extend(tail)
            for line in reversed(tail):
                try:
                    self.last_id = str(json.loads(line)["id"])
                    break
                except (ValueError, KeyError, TypeError):
                    continue
        self._loaded = True

    def follow(self, count: int = 500) -> int:
        """Write the events since the last call; returns how many lines were added."""
        if not self._loaded:
            self._load()
        rows = self.r.xread({self.stream: self.last_id}, count=count)
        new: list[str] = []
        for _stream, entries in rows:
            for entry_id, fields in entries:
                eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
                self.last_id = eid
                if fields.get(b"type") != b"event":
                    continue
                try:
                    ev = decode_fields(fields)
                except (msgspec.DecodeError, msgspec.ValidationError, KeyError):
                    continue   # an undecodable entry is reported by its reader; the log goes on without it
                new.append(line_of(eid, ev))
        if new:
            self._write(new)
        return len(new)

    def _write(self, new: list[str]) -> None:
        if not self.max_lines:
            with open(self.path, "a", encoding="utf-8") as f:
                f.write("\n".join(new) + "\n")
            return
        self.lines.extend(new)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write("\n".join(self.lines) + "\n")
        os.replace(tmp, self.path)
