"""The state document in Redis with optimistic concurrency, plus its atomic file snapshot.

Every change goes through `update()`: read, apply a pure transition, write with WATCH/MULTI on the key,
append the transition's events (and hand-over messages) in the same transaction, then write the snapshot
(temp file, fsync, os.replace, never older than the file it replaces).
"""
from __future__ import annotations

import fcntl
import json
import os
import time
from pathlib import Path
from typing import Callable

import msgspec
import redis

from shared.adapters.redis_streams import encode_fields
from shared.domain.messages import StreamMessage
from shared.domain.position import State, decode_state, encode_state

# A transition returns None (no change) or (new state, [(stream key, message), ...]) to append atomically.
Transition = Callable[[State], "tuple[State, list[tuple[str, StreamMessage]]] | None"]


class StateStore:
    """Owner of `{prefix}state` and the snapshot file for one process."""

    def __init__(self, r: redis.Redis, key: str, snapshot_path: str, actor: str, maxlen: int = 100_000,
                 clock: Callable[[], float] = time.time) -> None:
        self.r, self.key, self.actor, self.maxlen = r, key, actor, maxlen
        self.snapshot = Path(snapshot_path)
        self._clock = clock

    def load(self) -> State:
        """The current state; if Redis has none, restore it from the snapshot first (Redis came back empty)."""
        raw = self.r.get(self.key)
        if raw is not None:
            return decode_state(raw)
        snap = read_snapshot(self.snapshot)
        if snap is None:
            return State()
        # SET NX: if another process restored concurrently, keep theirs.
        self.r.set(self.key, encode_state(snap), nx=True)
        return decode_state(self.r.get(self.key))

    def update(self, fn: Transition, retries: int = 50, snapshot: bool = True) -> State:
        """Apply `fn` with optimistic concurrency; returns the state after the change (or unchanged).
        `snapshot=False` leaves the file snapshot to a later `sync_snapshot()` (a latency-critical caller
        that has another way back after losing Redis, e.g. reconciling with the exchange)."""
        for _ in range(retries):
            with self.r.pipeline() as pipe:
                try:
                    pipe.watch(self.key)
                    raw = pipe.get(self.key)
                    cur = decode_state(raw) if raw is not None else self._restore_in_watch(pipe)
                    out = fn(msgspec.structs.replace(cur))
                    if out is None:
                        pipe.unwatch()
                        return cur
                    new, messages = out
                    new = msgspec.structs.replace(new, version=cur.version + 1, updated_at=self._clock(),
                                                  updated_by=self.actor)
                    pipe.multi()
                    pipe.set(self.key, encode_state(new))
                    for stream, msg in messages:
                        pipe.xadd(stream, encode_fields(msg), maxlen=self.maxlen, approximate=True)
                    pipe.execute()
                except redis.WatchError:
                    continue
            if snapshot:
                write_snapshot(self.snapshot, new)
            return new
        raise RuntimeError(f"state update by {self.actor} lost {retries} races in a row")

    def _restore_in_watch(self, pipe: redis.client.Pipeline) -> State:
        snap = read_snapshot(self.snapshot)
        return snap if snap is not None else State()

    def sync_snapshot(self) -> None:
        """Bring the snapshot up to Redis (after a crash between the Redis write and the file write)."""
        raw = self.r.get(self.key)
        if raw is not None:
            write_snapshot(self.snapshot, decode_state(raw))


def read_snapshot(path: Path) -> State | None:
    """The snapshot's state, or None when there is no file."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_state(raw)


def _file_version(path: Path) -> int:
    try:
        return int(json.loads(path.read_bytes()).get("version", -1))
    except (FileNotFoundError, ValueError):
        return -1


def write_snapshot(path: Path, state: State) -> bool:
    """Atomically replace the snapshot unless the file already holds this version or a newer one.
    A lock file serialises writers from different processes. Returns True when written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _file_version(path) >= state.version:
            return False
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        with open(tmp, "wb") as f:
            f.write(encode_state(state))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    return True
