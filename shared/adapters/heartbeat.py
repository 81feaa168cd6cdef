"""Heartbeats: `{prefix}hb:<process>` = {"ts","pid","info"} with a TTL, refreshed by each service loop."""
from __future__ import annotations

import os
import time
from typing import Any

import msgspec
import redis


class Heartbeat(msgspec.Struct, kw_only=True):
    """What a process says about itself; `ts` is wall time (heartbeats are about processes, not markets)."""
    process: str
    pid: int
    ts: float
    info: dict[str, Any] = {}


def beat(r: redis.Redis, prefix: str, process: str, ttl_sec: int, info: dict[str, Any] | None = None) -> None:
    """Refresh this process's heartbeat."""
    hb = Heartbeat(process=process, pid=os.getpid(), ts=time.time(), info=info or {})
    r.set(f"{prefix}hb:{process}", msgspec.json.encode(hb), ex=ttl_sec)


def read_all(r: redis.Redis, prefix: str, processes: list[str]) -> dict[str, Heartbeat | None]:
    """The last heartbeat of each named process (None when absent or expired)."""
    raws = r.mget([f"{prefix}hb:{p}" for p in processes])
    out: dict[str, Heartbeat | None] = {}
    for p, raw in zip(processes, raws):
        out[p] = msgspec.json.decode(raw, type=Heartbeat) if raw else None
    return out


class Beater:
    """Rate-limited heartbeat for a hot loop: beats at most every `every_sec` wall seconds."""

    def __init__(self, r: redis.Redis, prefix: str, process: str, ttl_sec: int, every_sec: float = 1.0) -> None:
        self._args = (r, prefix, process, ttl_sec)
        self._every = every_sec
        self._last = 0.0

    def maybe_beat(self, info: dict[str, Any] | None = None) -> None:
        """Beat if the last beat is older than `every_sec`."""
        now = time.monotonic()
        if now - self._last >= self._every:
            beat(*self._args, info=info)
            self._last = now
