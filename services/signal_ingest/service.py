"""signal_ingest: the only door for PEAK signals. Tails deltascout.log, validates and dedups each line, and
publishes it -- exactly once -- to `{prefix}signals` or `{prefix}rejects`.

Redis keys (prefix = EXEC_PREFIX):
    {prefix}ingest:offset   hash  inode, offset (where the next unread line starts), tail_len + tail (hash of the
                                  bytes just before the offset: a file truncated and rewritten in place no longer
                                  has them), head_len + head (hash of the file's first bytes, to tell a recreated
                                  file that reused the inode number), draining (JSON [[inode, offset, tail_len,
                                  tail], ..]: rotated files still read until idle for LOG_ROTATE_IDLE_SEC),
                                  fingerprint (of the dedup key scheme), path
    {prefix}ingest:seen     zset  dedup keys of published signals, scored by insertion time (us), <= SEEN_KEYS_MAX
    {prefix}ingest:epoch    str   incremented by every starting instance; a superseded instance stops
    {prefix}signals         stream of Signal;  {prefix}rejects  stream of Reject (MAXLEN ~ STREAM_MAXLEN)
    {prefix}hb:signal_ingest  heartbeat (shared.adapters.heartbeat), EX HEARTBEAT_TTL_SEC, every second

Exactly once: the lines available (up to TX_MAX_LINES) are published in ONE transaction
    WATCH epoch; GET epoch (== ours?); MULTI; XADD signals|rejects per line; XTRIM ~; ZADD seen; ZREMRANGEBYRANK
    seen; HSET offset (inode, end of the last line); EXEC
A crash before EXEC publishes nothing and leaves the offsets where they were; after it, the offsets (of the
current file and of every rotated file still being read) are past those lines. On restart or reconnect the offset and the seen set are re-read from Redis; the in-memory mirror of the
seen set is rolled back when a transaction fails, so it never runs ahead of what was committed.
"""
from __future__ import annotations

import os
import sys
import time
from collections import OrderedDict
from typing import IO, Any

import msgspec
import redis

from shared.adapters.heartbeat import beat
from shared.adapters.alerts import Alerts
from shared.adapters.log_tail import FilePos, Line, LogTailer, line_fingerprint, read_tail_lines
from shared.adapters.redis_streams import publish
from shared.adapters.redis_streams import encode_fields
from shared.clock import Clock
from shared.config import Config
from shared.domain.messages import Event, Reject, Signal
from shared.domain.peak import ParseParams, dedup_fingerprint, make_reject, parse_line, too_long
from shared.jsonlog import JsonLogger
from shared.runtime import boot

SERVICE = "signal_ingest"
TX_MAX_LINES = 1000          # lines per MULTI/EXEC
HEARTBEAT_EVERY_SEC = 1.0
_json = msgspec.json.Encoder()


def _resp(*args: bytes) -> bytes:
    """One command in the Redis protocol (RESP)."""
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


_XADD_HEADS: dict[tuple[bytes, str], bytes] = {}


def _xadd(key: bytes, tag: str, data: bytes) -> bytes:
    """`XADD key * type <tag> data <data>` in RESP, with the constant part built once."""
    head = _XADD_HEADS.get((key, tag))
    if head is None:
        full = _resp(b"XADD", key, b"*", b"type", tag.encode(), b"data", b"")
        head = _XADD_HEADS[(key, tag)] = full[:-len(b"$0\r\n\r\n")]
    return b"%s$%d\r\n%s\r\n" % (head, len(data), data)


_MULTI = _resp(b"MULTI")
_EXEC = _resp(b"EXEC")


class Superseded(RuntimeError):
    """Another instance started (the epoch moved): this one must stop publishing."""


def _s(v: bytes | str | None) -> str:
    return v.decode() if isinstance(v, bytes) else (v or "")


class Ingestor:
    """The ingest loop, usable in-process (tests) or from __main__. `start()`, then `step()`/`wait()`."""

    def __init__(self, cfg: Config, r: redis.Redis, log: JsonLogger, clock: Clock, *, use_inotify: bool = True,
                 tx_max_lines: int = TX_MAX_LINES, log_decisions: bool = True,
                 log_stream: "HoldStream | None" = None) -> None:
        self.cfg, self.r, self.log, self.clock = cfg, r, log, clock
        self.params = ParseParams.from_config(cfg)
        self.fingerprint = dedup_fingerprint(cfg.DEDUP_PRICE_DECIMALS)
        self.path = os.path.abspath(cfg.DELTASCOUT_LOG)
        self.k_offset = cfg.key("ingest:offset")
        self.k_seen = cfg.key("ingest:seen")
        self.k_epoch = cfg.key("ingest:epoch")
        self.k_signals = cfg.key("signals")
        self.k_rejects = cfg.key("rejects")
        self.k_hb = cfg.key(f"hb:{SERVICE}")
        self.k_events = cfg.key("events")
        self._kb_signals, self._kb_rejects = self.k_signals.encode(), self.k_rejects.encode()
        self._kb_seen, self._kb_offset = self.k_seen.encode(), self.k_offset.encode()
        self._kb_epoch = self.k_epoch.encode()
        self.use_inotify = use_inotify
        self.tx_max_lines = tx_max_lines
        self.log_decisions = log_decisions
        self.log_stream = log_stream
        self.tailer: LogTailer | None = None
        self.seen: OrderedDict[str, int] = OrderedDict()  # key -> score, oldest first (mirror of the zset)
        self.last_score = 0
        self.epoch = b""
        self.position: tuple[int, int] | None = None  # last committed (inode, offset) of the current file
        self.committed: dict[int, FilePos] = {}       # committed position of every open file (current, draining)
        self._tail_events: list[tuple[str, dict[str, Any]]] = []
        self.alerts = Alerts(r, cfg, log, clock.now)
        self._next_hb = 0.0
        self.published = 0

    # ---- start-up -----------------------------------------------------------------------------------
    def start(self) -> None:
        """Load (or create) the offset and seen set from Redis and open the tailer at the stored offset."""
        self.close_tailer()
        self.epoch = str(self.r.incr(self.k_epoch)).encode()
        h = {_s(k): _s(v) for k, v in self.r.hgetall(self.k_offset).items()}
        if not h:
            if self.position is not None:
                self._restore_from_memory()
            else:
                self._bootstrap(clear=True, reason="first_start")
            h = {_s(k): _s(v) for k, v in self.r.hgetall(self.k_offset).items()}
        elif h.get("path") and h.get("path") != self.path:
            self.log.warning("log_path_changed", old_path=h.get("path"), path=self.path)
            self._bootstrap(clear=False, reason="path_changed")
            h = {_s(k): _s(v) for k, v in self.r.hgetall(self.k_offset).items()}
        inode, offset = int(h.get("inode") or 0), int(h.get("offset") or 0)
        if self.position is not None and self.position[0] == inode and self.position[1] > offset:
            # Redis came back with older state (e.g. an old snapshot): we know we published further.
            self.log.warning("redis_state_behind", stored_offset=offset, committed_offset=self.position[1])
            self._restore_from_memory()
            h = {_s(k): _s(v) for k, v in self.r.hgetall(self.k_offset).items()}
            inode, offset = int(h.get("inode") or 0), int(h.get("offset") or 0)
        head = (int(h.get("head_len") or 0), h.get("head") or "")
        tail = (int(h.get("tail_len") or 0), h.get("tail") or "")
        draining = _decode_draining(h.get("draining") or "")
        if h.get("fingerprint") != self.fingerprint:
            self.log.warning("dedup_fingerprint_changed", old=h.get("fingerprint"), new=self.fingerprint,
                             action="clear seen set and re-seed from the log tail; offset unchanged")
            self._reseed(inode, offset)
        self._load_seen()
        self.position = (inode, offset)
        self.committed = {d.inode: d for d in draining}
        self.committed[inode] = FilePos(inode, offset, tail)
        self._tail_events = []
        self.tailer = LogTailer(self.path, inode=inode, offset=offset, max_line_bytes=self.cfg.MAX_LINE_BYTES,
                                on_event=self._tail_event, use_inotify=self.use_inotify, head=head, tail=tail,
                                draining=draining, rotate_idle_sec=self.cfg.LOG_ROTATE_IDLE_SEC)
        self.log.info("started", path=self.path, inode=inode, offset=offset, seen=len(self.seen),
                      draining=[list(d[:2]) for d in draining], inotify=self.tailer.using_inotify,
                      epoch=int(self.epoch), fingerprint=self.fingerprint[:12])

    def _tail_keys(self, inode: int | None, end: int | None) -> tuple[int, int, list[str]]:
        """(inode, boundary, keys) of the valid PEAK lines among the last TAIL_LINES lines before `end`."""
        try:
            cap = max(1, self.cfg.TAIL_LINES) * (self.cfg.MAX_LINE_BYTES + 1)
            ino, boundary, lines = read_tail_lines(self.path, self.cfg.TAIL_LINES, end=end, max_bytes=cap)
        except FileNotFoundError:
            return 0, 0, []
        if inode is not None and ino != inode:
            return ino, boundary, []  # the offset belongs to another file: nothing before it here
        keys: list[str] = []
        for raw in lines:
            m = parse_line(raw, offset=0, now=None, params=self.params)
            if isinstance(m, Signal) and m.key not in keys:
                keys.append(m.key)
        return ino, boundary, keys

    def _scores(self, keys: list[str]) -> dict[str, int]:
        out = {}
        for k in keys:
            self.last_score = max(int(time.time() * 1e6), self.last_score + 1)
            out[k] = self.last_score
        return out

    def _bootstrap(self, *, clear: bool, reason: str) -> None:
        """First start: seed the seen set from the tail and start at its end, so history is never traded."""
        ino, boundary, keys = self._tail_keys(None, None)
        exists = os.path.exists(self.path)
        if not exists:
            ino, boundary = 0, 0  # the file does not exist yet: whatever appears is new, read it from 0
        pipe = self.r.pipeline(transaction=True)
        if clear:
            pipe.delete(self.k_seen)
        if keys:
            pipe.zadd(self.k_seen, self._scores(keys))
        pipe.zremrangebyrank(self.k_seen, 0, -(self.cfg.SEEN_KEYS_MAX + 1))
        pipe.hset(self.k_offset, mapping={"inode": ino, "offset": boundary, "fingerprint": self.fingerprint,
                                          "path": self.path})
        pipe.execute()
        self.log.info("bootstrap", reason=reason, path=self.path, log_exists=exists, inode=ino, offset=boundary,
                      seeded_keys=len(keys), tail_lines=self.cfg.TAIL_LINES)

    def _reseed(self, inode: int, offset: int) -> None:
        """Scheme change: rebuild the seen set with the new key scheme from the lines before the offset."""
        _, _, keys = self._tail_keys(inode, offset)
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.k_seen)
        if keys:
            pipe.zadd(self.k_seen, self._scores(keys))
        pipe.zremrangebyrank(self.k_seen, 0, -(self.cfg.SEEN_KEYS_MAX + 1))
        pipe.hset(self.k_offset, mapping={"fingerprint": self.fingerprint, "path": self.path})
        pipe.execute()
        self.log.info("reseeded", seeded_keys=len(keys), inode=inode, offset=offset)

    def _restore_from_memory(self) -> None:
        """Redis came back empty (or behind) while we ran: write back what we had committed instead of skipping
        to EOF (or re-publishing)."""
        assert self.position is not None
        pipe = self.r.pipeline(transaction=True)
        pipe.delete(self.k_seen)
        if self.seen:
            pipe.zadd(self.k_seen, self.seen)
        inode, offset = self.position
        pipe.hset(self.k_offset, mapping={"inode": inode, "offset": offset, "fingerprint": self.fingerprint,
                                          "path": self.path})
        pipe.execute()
        self.log.warning("state_restored_from_memory", inode=inode, offset=offset, seen=len(self.seen))

    def _load_seen(self) -> None:
        rows = self.r.zrange(self.k_seen, 0, -1, withscores=True)
        self.seen = OrderedDict((_s(k), int(sc)) for k, sc in rows)
        self.last_score = max([self.last_score, *self.seen.values()])

    def _tail_event(self, event: str, **fields: Any) -> None:
        # Collected here and said by step() once read_lines returned: a Redis error while saying it must not
        # interrupt the tailer in the middle of a file switch.
        self._tail_events.append((event, fields))

    def _say_tail_events(self) -> None:
        """Log, `events` stream, and for a missing or deleted log a throttled alert (recovered when it is back)."""
        events, self._tail_events = self._tail_events, []
        for event, fields in events:
            warn = event in _TAIL_WARNINGS
            (self.log.warning if warn else self.log.info)(event, **fields)
            publish(self.r, self.k_events, Event(service=SERVICE, kind=event, at=self.clock.now(), data=fields),
                    self.cfg.STREAM_MAXLEN)
            if event == "log_missing":
                what = "deleted" if fields.get("deleted") else "missing"
                self.alerts.notify("ingest_log_missing", f"{self.path} is {what}: no PEAK signal can arrive "
                                   f"until it is back", "ERROR", path=self.path, deleted=fields.get("deleted"))
            elif event == "log_appeared":
                self.alerts.recovered("ingest_log_missing", f"{self.path} is back")

    def close_tailer(self) -> None:
        if self.tailer is not None:
            self.tailer.close()
            self.tailer = None

    # ---- the loop -----------------------------------------------------------------------------------
    def heartbeat(self, force: bool = False) -> None:
        now = time.monotonic()
        if force or now >= self._next_hb:
            beat(self.r, self.cfg.EXEC_PREFIX, SERVICE, self.cfg.HEARTBEAT_TTL_SEC)
            self._next_hb = now + HEARTBEAT_EVERY_SEC

    def step(self) -> int:
        """Read what is available and publish it. Returns the number of lines handled."""
        assert self.tailer is not None
        lines = self.tailer.read_lines(self.tx_max_lines * 4)
        if self._tail_events:
            self._say_tail_events()
        for i in range(0, len(lines), self.tx_max_lines):
            self._publish(lines[i:i + self.tx_max_lines])
        return len(lines)

    def wait(self, timeout: float, stop: "StopFlag | None" = None) -> None:
        assert self.tailer is not None
        t = max(0.0, min(timeout, self._next_hb - time.monotonic()))
        if stop is None:
            self.tailer.wait(t)
            return
        stop.waiting = True  # a stop signal arriving now interrupts the wait at once
        try:
            if not stop.set:
                self.tailer.wait(t)
        finally:
            stop.waiting = False

    def _decide(self, ln: Line, now: float, pending: dict[str, int],
                evicted: list[tuple[str, int]]) -> Signal | Reject:
        if ln.status == "too_long":
            return too_long(ln.data, ln.offset, ln.length, now)
        if ln.status == "partial":
            return make_reject("partial_line", f"{ln.length} bytes without newline at the end of a rotated file",
                               ln.data, ln.offset, now)
        try:
            m = parse_line(ln.data, offset=ln.offset, now=now, params=self.params, read_at=now)
        except Exception as e:  # a bug must not wedge the door on one line: reject it, loudly
            self.log.error("parse_crashed", offset=ln.offset, error=repr(e)[:200])
            return make_reject("internal_error", repr(e)[:200], ln.data, ln.offset, now)
        if isinstance(m, Signal):
            if m.key in self.seen:
                return make_reject("duplicate", m.key, ln.data, ln.offset, now)
            # Admit it to the window now, so that a later line of the same batch sees exactly the window the
            # zset will hold (evicting the oldest as the zset trim will). If the transaction fails, the caller
            # restarts and reloads the seen set from Redis.
            self.last_score = max(int(time.time() * 1e6), self.last_score + 1)
            self.seen[m.key] = self.last_score
            pending.pop(m.key, None)
            pending[m.key] = self.last_score
            while len(self.seen) > self.cfg.SEEN_KEYS_MAX:
                evicted.append(self.seen.popitem(last=False))
        return m

    def _publish(self, lines: list[Line]) -> None:
        """Decide every line and commit the batch in ONE transaction:
        WATCH epoch; GET epoch; MULTI; XADD.. (signals/rejects); XTRIM ~; ZADD seen; ZREMRANGEBYRANK seen;
        HSET offset; EXEC. The commands are packed by hand (RESP) and sent in one write: redis-py's per-argument
        packing was the bottleneck at 20,000 lines/s."""
        now = self.clock.now()
        pending: dict[str, int] = {}
        evicted: list[tuple[str, int]] = []
        before = self.last_score  # every key admitted by this batch scores above this
        try:
            msgs, last = self._build_and_commit(lines, now, pending, evicted)
        except BaseException:
            # Not committed (or unknown): put the seen mirror back exactly as it was before this batch.
            for k in pending:
                self.seen.pop(k, None)
            for k, sc in reversed(evicted):
                if sc <= before:
                    self.seen[k] = sc
                    self.seen.move_to_end(k, last=False)
            raise
        self._log_decisions(msgs, last)

    def _build_and_commit(self, lines: list[Line], now: float, pending: dict[str, int],
                          evicted: list[tuple[str, int]]) -> tuple[list[Signal | Reject], Line]:
        msgs: list[Signal | Reject] = []
        cmds: list[bytes] = [_MULTI]
        k_sig, k_rej = self._kb_signals, self._kb_rejects
        n_sig = 0
        for ln in lines:
            m = self._decide(ln, now, pending, evicted)
            msgs.append(m)
            f = encode_fields(m)
            if isinstance(m, Signal):
                n_sig += 1
                cmds.append(_xadd(k_sig, f["type"], f["data"]))
            else:
                cmds.append(_xadd(k_rej, f["type"], f["data"]))
        maxlen = str(self.cfg.STREAM_MAXLEN).encode()
        # MAXLEN ~ once per stream and transaction (cheaper than on every XADD, same bound)
        if n_sig:
            cmds.append(_resp(b"XTRIM", k_sig, b"MAXLEN", b"~", maxlen))
        if n_sig < len(lines):
            cmds.append(_resp(b"XTRIM", k_rej, b"MAXLEN", b"~", maxlen))
        if pending:
            args = [b"ZADD", self._kb_seen]
            for k, sc in pending.items():
                args += (str(sc).encode(), k.encode())
            cmds.append(_resp(*args))
            cmds.append(_resp(b"ZREMRANGEBYRANK", self._kb_seen, b"0", str(-(self.cfg.SEEN_KEYS_MAX + 1)).encode()))
        last = lines[-1]
        cur, draining = self._positions_after(lines)
        head_len, head = self.tailer.head() if self.tailer else (0, "")
        cmds.append(_resp(b"HSET", self._kb_offset, b"inode", str(cur.inode).encode(),
                          b"offset", str(cur.offset).encode(), b"tail_len", str(cur.tail[0]).encode(),
                          b"tail", cur.tail[1].encode(), b"head_len", str(head_len).encode(), b"head", head.encode(),
                          b"draining", _json.encode([[d.inode, d.offset, *d.tail] for d in draining])))
        cmds.append(_EXEC)
        self._transact(cmds)
        # committed: update the mirrors
        self.position = (cur.inode, cur.offset)
        self.committed = {d.inode: d for d in draining}
        self.committed[cur.inode] = cur
        self.published += len(lines)
        return msgs, last

    def _positions_after(self, lines: list[Line]) -> tuple[FilePos, list[FilePos]]:
        """Where each open file resumes once `lines` are committed: the current file and the rotated ones the
        tailer still reads. A file with no committed line yet resumes at 0 (it was opened at 0 by a rotation)."""
        assert self.tailer is not None
        new = dict(self.committed)
        last_of: dict[int, Line] = {}
        for ln in lines:
            last_of[ln.inode] = ln
        for ino, ln in last_of.items():
            new[ino] = FilePos(ino, ln.end, line_fingerprint(ln))
        cur_ino = self.tailer.position[0]
        cur = new.get(cur_ino) or FilePos(cur_ino, 0)
        draining = [new.get(ino) or FilePos(ino, 0) for ino, _ in self.tailer.draining if ino != cur_ino]
        return cur, draining

    def _log_decisions(self, msgs: list[Signal | Reject], last: Line) -> None:
        if self.log_decisions:
            hold = self.log_stream
            if hold is not None:
                hold.hold = True  # one write for the whole batch instead of one per line
            try:
                for m in msgs:
                    if isinstance(m, Signal):
                        self.log.info("signal", key=m.key, kind=m.kind, price=str(m.price), offset=m.offset,
                                      inode=last.inode)
                    else:
                        self.log.info("reject", reason=m.reason, detail=m.detail[:200], offset=m.offset,
                                      inode=last.inode)
            finally:
                if hold is not None:
                    hold.release()

    def _transact(self, cmds: list[bytes]) -> list[Any]:
        """Run MULTI..EXEC (cmds[0] is MULTI, cmds[-1] EXEC) under WATCH of the epoch key on one connection."""
        pool = self.r.connection_pool
        conn = pool.get_connection()
        try:
            conn.send_packed_command([_resp(b"WATCH", self._kb_epoch) + _resp(b"GET", self._kb_epoch)])
            conn.read_response()
            if conn.read_response() != self.epoch:
                raise Superseded(f"epoch moved from {self.epoch!r}")
            conn.send_packed_command([b"".join(cmds)])
            conn.read_response()                      # OK to MULTI
            errors = []
            for _ in range(len(cmds) - 2):            # QUEUED for each command
                try:
                    conn.read_response()
                except redis.ResponseError as e:
                    errors.append(e)
            try:
                res = conn.read_response()            # EXEC: the replies, or nil when the WATCH fired
            except redis.ResponseError as e:
                raise redis.ResponseError(f"transaction aborted: {e}; queued errors: {errors}") from None
            if res is None:
                raise Superseded("epoch moved during the transaction")
            for x in res:
                if isinstance(x, redis.ResponseError):
                    raise x
            return res
        except BaseException:
            conn.disconnect()                         # never reuse a connection in an unknown protocol state
            raise
        finally:
            pool.release(conn)

    def run(self, stop: "StopFlag") -> None:
        """Run until `stop` is set. Redis outages: log, back off, reconnect, continue from the stored offset."""
        started = False
        backoff = 0.1
        down_since: float | None = None
        while not stop.set:
            try:
                if not started:
                    self.start()
                    started = True
                    if down_since is not None:
                        self.log.info("redis_reconnected", down_sec=round(time.monotonic() - down_since, 3))
                        down_since = None
                    backoff = 0.1
                self.heartbeat()
                if self.step() == 0:
                    self.wait(1.0, stop)
            except _StopNow:
                break
            except (redis.ConnectionError, redis.TimeoutError) as e:
                if down_since is None:
                    down_since = time.monotonic()
                self.log.error("redis_unavailable", error=str(e)[:200], retry_in_sec=backoff)
                started = False
                self.close_tailer()
                stop.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
        self.close_tailer()
        self.log.info("stopped", position=list(self.position) if self.position else None)


_TAIL_WARNINGS = frozenset({"log_missing", "log_truncated", "log_rewritten", "log_replaced_while_away",
                            "log_replaced_same_inode", "log_rotated_gone", "log_rotated_rewritten"})


def _decode_draining(raw: str) -> list[FilePos]:
    """The `draining` field: [[inode, offset, tail_len, tail], ...] (absent or unreadable: none)."""
    try:
        rows = msgspec.json.decode(raw) if raw else []
        return [FilePos(int(r[0]), int(r[1]), (int(r[2]), str(r[3]))) for r in rows]
    except (msgspec.DecodeError, TypeError, ValueError, IndexError):
        return []


class HoldStream:
    """The log stream: writes go straight through, except while `hold` is set (a batch of decision lines),
    when they are collected and written with one call by release()."""

    def __init__(self, target: IO[str]) -> None:
        self.target = target
        self.hold = False
        self._buf: list[str] = []

    def write(self, s: str) -> int:
        if self.hold:
            self._buf.append(s)
        else:
            self.target.write(s)
        return len(s)

    def flush(self) -> None:
        if not self.hold:
            self.target.flush()

    def release(self) -> None:
        self.hold = False
        if self._buf:
            self.target.write("".join(self._buf))
            self._buf.clear()
        self.target.flush()


class _StopNow(Exception):
    """Raised by the signal handler only while the loop is idle in wait()."""


class StopFlag:
    """Set by SIGTERM/SIGINT; sleep() returns early when it is set; an idle wait() is interrupted."""

    def __init__(self) -> None:
        self.set = False
        self.waiting = False

    def trip(self, *_: object) -> None:
        self.set = True
        if self.waiting:
            self.waiting = False
            raise _StopNow()

    def sleep(self, sec: float) -> None:
        end = time.monotonic() + sec
        while not self.set and time.monotonic() < end:
            time.sleep(min(0.05, max(0.0, end - time.monotonic())))


def main() -> int:
    """Start through shared.runtime.boot (its own Redis user, clock, logger, signal handlers) and tail the log."""
    stream = HoldStream(sys.stderr)
    stop = StopFlag()
    rt = boot(SERVICE, log_stream=stream, socket_timeout=5, on_stop=stop.trip)  # type: ignore[arg-type]
    cfg, r, log, clock = rt.cfg, rt.r, rt.log, rt.clock
    log.info("config", path=cfg.DELTASCOUT_LOG, prefix=cfg.EXEC_PREFIX, redis=cfg.redacted()["REDIS_URL"],
             tail_lines=cfg.TAIL_LINES, seen_keys_max=cfg.SEEN_KEYS_MAX, max_peak_age_sec=cfg.MAX_PEAK_AGE_SEC,
             dedup_price_decimals=cfg.DEDUP_PRICE_DECIMALS, strict_source=cfg.STRICT_SOURCE,
             max_line_bytes=cfg.MAX_LINE_BYTES, clock=cfg.CLOCK, rotate_idle_sec=cfg.LOG_ROTATE_IDLE_SEC)
    ing = Ingestor(cfg, r, log, clock, log_stream=stream)
    try:
        ing.run(stop)
    except Superseded as e:
        log.error("superseded", error=str(e), action="another signal_ingest instance started; exiting")
        return 3
    return 0
