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
                 clock: Callable[[], float] = time.time, halt_key: str | None = None, keep_halt: bool = False) -> None:
        self.r, self.key, self.actor, self.maxlen = r, key, actor, maxlen
        # the halt flag beside the state (`{prefix}halt` for `{prefix}state`); its copy rides in the document.
        # Only its owner (keep_halt: position_engine) writes the flag back on a restore: the others may not
        # write it under the ACL.
        self.halt_key = halt_key or (key[:-len("state")] + "halt" if key.endswith("state") else key + ":halt")
        self.keep_halt = keep_halt
        self.snapshot = Path(snapshot_path)
        self._clock = clock

    def load(self) -> State:
        """The current state; if Redis has none, restore it (and its halt flag) from the snapshot first (Redis
        came back empty)."""
        raw = self.r.get(self.key)
        if raw is not None:
            return decode_state(raw)
        snap = read_snapshot(self.snapshot)
        if snap is None:
            return State()
        # SET NX: if another process restored concurrently, keep theirs.
        with self.r.pipeline(transaction=True) as pipe:
            pipe.set(self.key, encode_state(snap), nx=True)
            self._restore_halt(pipe, snap)
            pipe.execute()
        return decode_state(self.r.get(self.key))

    def _restore_halt(self, pipe: redis.client.Pipeline, snap: State) -> None:
        """A halted stack stays halted when its Redis comes back without the flag (never cleared by a restore)."""
        if snap.halt is not None and self.keep_halt:
            pipe.set(self.halt_key, msgspec.json.encode(snap.halt), nx=True)

    def update(self, fn: Transition, retries: int = 50, snapshot: bool = True,
               also: Callable[[redis.client.Pipeline], None] | None = None) -> State:
        """Apply `fn` with optimistic concurrency; returns the state after the change (or unchanged).
        `snapshot=False` leaves the file snapshot to a later `sync_snapshot()` (a latency-critical caller
        that has another way back after losing Redis, e.g. reconciling with the exchange). `also` queues more
        writes in the same transaction (the halt flag beside its copy in the state)."""
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
                    if raw is None:
                        self._restore_halt(pipe, cur)
                    for stream, msg in messages:
                        pipe.xadd(stream, encode_fields(msg), maxlen=self.maxlen, approximate=True)
                    if also is not None:
                        also(pipe)
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

    def set_halt(self, doc: dict | None) -> State:
        """Set (`doc`: who, why, when) or clear (None) the halt flag and its copy in the state, in one
        transaction, so the snapshot carries it."""
        def fn(st: State) -> tuple[State, list]:
            st.halt = doc
            return st, []

        def flag(pipe: redis.client.Pipeline) -> None:
            if doc is None:
                pipe.delete(self.halt_key)
            else:
                pipe.set(self.halt_key, msgspec.json.encode(doc))
        return self.update(fn, also=flag)

    def sync_snapshot(self) -> str:
        """At start (and after a crash between the Redis write and the file write) the newer copy wins, by
        `version`: Redis' state goes to the file, or a newer file (Redis came back with an older state, e.g.
        from an old RDB) goes back into Redis with its halt flag. Returns "file", "redis" or "" (in step)."""
        with self.r.pipeline() as pipe:
            try:
                pipe.watch(self.key)
                raw = pipe.get(self.key)
                snap = read_snapshot(self.snapshot)
                if raw is None and snap is None:
                    pipe.unwatch()
                    return ""
                cur = decode_state(raw) if raw is not None else None
                if snap is not None and (cur is None or snap.version > cur.version):
                    pipe.multi()
                    pipe.set(self.key, encode_state(snap))
                    self._restore_halt(pipe, snap)
                    pipe.execute()
                    return "redis"
                pipe.unwatch()
            except redis.WatchError:
                return ""   # another process wrote meanwhile: Redis is the newer copy, its writer snapshots it
        return "file" if cur is not None and write_snapshot(self.snapshot, cur) else ""


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
