"""Fault injection: counters consumed by matching requests, optionally restricted by path and side."""
from __future__ import annotations

import threading
from typing import Any

import msgspec

COUNTED = ("after_accept_5xx", "after_accept_delay_ms", "timeout", "http_429", "http_418", "err_1021",
           "transient_2013", "reject_orders", "filter_failure",
           "ws_silent", "ws_drop")  # WebSocket API: swallow n user-data events (-1 = until cleared); close all n times
KINDS = ("latency_ms",) + COUNTED


class Fault(msgspec.Struct):
    """One armed fault. `remaining` -1 = until cleared. `value` is ms or seconds depending on kind."""
    kind: str
    remaining: int
    value: float = 0.0
    path: str = ""
    side: str = ""

    def matches(self, path: str, side: str) -> bool:
        """Does this fault apply to a request on `path` with `side`?"""
        return (not self.path or self.path == path) and (not self.side or self.side == side)


class FaultBook:
    """Thread-safe set of armed faults."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def arm(self, body: dict[str, Any]) -> list[Fault]:
        """Arm the faults named in `body` (kinds in KINDS); `{"clear": true}` disarms all."""
        unknown = set(body) - set(KINDS) - {"path", "side", "count", "retry_after", "timeout_ms", "young_ms", "clear"}
        if unknown:
            raise ValueError(f"unknown fault keys {sorted(unknown)}; allowed: {', '.join(KINDS)}, "
                             "path, side, count, retry_after, timeout_ms, young_ms, clear")
        new = [self._fault(k, body) for k in KINDS if k in body]
        with self._lock:
            if body.get("clear"):
                self._faults.clear()
            if "latency_ms" in body:  # latency is a setting: the new value replaces the old one
                self._faults = [f for f in self._faults if f.kind != "latency_ms"]
            self._faults.extend(f for f in new if f.remaining != 0)
            return list(self._faults)

    @staticmethod
    def _fault(kind: str, body: dict[str, Any]) -> Fault:
        path, side, v = str(body.get("path", "")), str(body.get("side", "")).upper(), body[kind]
        if kind == "latency_ms":
            return Fault(kind, int(body.get("count", -1)) if float(v) else 0, float(v), path, side)
        if kind == "after_accept_delay_ms":
            return Fault(kind, int(body.get("count", 1)), float(v), path, side)
        retry = float(body.get("retry_after", 1))
        value = {"http_429": retry, "http_418": retry, "timeout": float(body.get("timeout_ms", 15000)),
                 "transient_2013": float(body.get("young_ms", 2000)) / 1000}
        return Fault(kind, int(v), value.get(kind, 0.0), path, side)

    def take(self, kind: str, path: str, side: str) -> Fault | None:
        """Consume one matching fault of `kind` (None if none is armed)."""
        with self._lock:
            for f in self._faults:
                if f.kind == kind and f.matches(path, side):
                    if f.remaining > 0:
                        f.remaining -= 1
                        if f.remaining == 0:
                            self._faults.remove(f)
                    return f
        return None

    def first(self, kind: str, path: str, side: str) -> Fault | None:
        """The first matching fault of `kind`, not consumed."""
        with self._lock:
            return next((f for f in self._faults if f.kind == kind and f.matches(path, side)), None)

    def peek(self, kind: str, path: str, side: str) -> bool:
        """Is a matching fault of `kind` armed (without consuming it)?"""
        with self._lock:
            return any(f.kind == kind and f.matches(path, side) for f in self._faults)

    def listing(self) -> list[Fault]:
        """All armed faults."""
        with self._lock:
            return list(self._faults)
