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


class UserStreamHealth:
    """Is `user_stream` alive and connected to the exchange? Read from its heartbeat at most every `every_sec`
    wall seconds (consumers of the `orders` stream ask on every loop)."""

    def __init__(self, r: redis.Redis, prefix: str, every_sec: float = 0.5) -> None:
        self._r, self._key, self._every = r, f"{prefix}hb:user_stream", every_sec
        self._at = 0.0
        self._ok = False

    def ok(self) -> bool:
        """True while the last heartbeat exists and says `connected`."""
        now = time.monotonic()
        if now - self._at >= self._every:
            self._at = now
            raw = self._r.get(self._key)
            try:
                self._ok = raw is not None and bool(msgspec.json.decode(raw, type=Heartbeat).info.get("connected"))
            except (msgspec.DecodeError, msgspec.ValidationError):
                self._ok = False
        return self._ok
