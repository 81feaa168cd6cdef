"""The lock-step replay clock (REPLAY_LOCKSTEP=true, only with CLOCK=replay): market time moves to the next price
point only once every process has acted on the current one, so a replay gives the same trades at any speed.

Who waits for whom (keys under EXEC_PREFIX):

* the replay driver (`executorctl replay`) plays one point on the paper exchange (POST /admin/advance), appends
  the signal lines due by then to DELTASCOUT_LOG, then XADDs the point's market time to `lockstep:tick`;
* position_engine and exit_manager (`LockStep`): each loop iteration first notes the *fingerprint* of the system,
  the last entry id of every stream a process reacts to (`WATCHED`: the tick, the audit trail every state change
  writes to, orders, positions, signals, rejects, commands). An iteration that found nothing to read then HSETs
  that fingerprint in `lockstep:acks` (and XADDs `lockstep:acked` to wake the driver). Anything written after the
  iteration started changes the fingerprint, so a stale acknowledgement never matches;
* user_stream counts each user-data event it has handled in `lockstep:ws_recv` (and XADDs `lockstep:ws`); the
  paper exchange counts each event it queued to a subscriber in `lockstep:ws_sent` before the call that caused it
  returns. While events are on their way (`LockStep.ws_behind`) position_engine and exit_manager do not act:
  they see a point's order updates whole, never half of them (the same decisions at any speed);
* signal_ingest's committed offset (`ingest:offset`) must reach the end of DELTASCOUT_LOG.

The driver's point is settled when every acknowledgement equals the current fingerprint, ws_recv >= ws_sent and
ingest is at the end of the log (`Conductor.settled`). A process without a heartbeat is not waited for, and no
point waits longer than LOCKSTEP_WAIT_SEC: the driver then moves on and records `lockstep_timeout` (a crash
never freezes the clock).
"""
from __future__ import annotations

import time

import redis

WATCHED = ("lockstep:tick", "lockstep:ws", "events", "orders", "positions", "signals", "rejects", "commands")
PARTICIPANTS = ("position_engine", "exit_manager")
MAXLEN = 1000
WS_BEHIND_MAX_SEC = 5.0   # a process waits this long at most for user-data events (one lost must not stop it)


def _id(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


def fingerprint(r: redis.Redis, prefix: str) -> tuple[list[str], bool]:
    """The last entry id of every watched stream ('0-0' for an empty one), and whether user-data events the
    exchange queued are still on their way to user_stream; one round trip, one consistent view."""
    pipe = r.pipeline(transaction=True)
    for s in WATCHED:
        pipe.xrevrange(prefix + s, "+", "-", count=1)
    pipe.mget([prefix + "lockstep:ws_sent", prefix + "lockstep:ws_recv"])
    res = pipe.execute()
    sent, recv = (int(x or 0) for x in res[-1])
    return [_id(rows[0][0]) if rows else "0-0" for rows in res[:-1]], recv < sent


class LockStep:
    """A process's side: `begin()` at the top of an iteration, `end(busy)` after it, `wait()` when idle.
    Disabled (the live default), begin/end do nothing and `wait` is never used."""

    def __init__(self, r: redis.Redis, prefix: str, process: str, enabled: bool) -> None:
        self.r, self.prefix, self.process, self.enabled = r, prefix, process, enabled
        self._fp: list[str] = []
        self._acked: list[str] = []
        self._tick_seen = ""
        self.new_tick = False   # the market moved since the previous iteration began
        # user-data events of this point are still on their way: act on the whole picture only (a stop that
        # triggered and filled at the same point must not be seen half-way, at one speed and not at another)
        self.ws_behind = False
        self._behind_since = 0.0

    def begin(self) -> None:
        """Note the fingerprint; `new_tick` and `ws_behind` tell the iteration what it may do."""
        if not self.enabled:
            return
        self._fp, behind = fingerprint(self.r, self.prefix)
        now = time.monotonic()
        self._behind_since = (self._behind_since or now) if behind else 0.0
        self.ws_behind = behind and now - self._behind_since < WS_BEHIND_MAX_SEC
        if self._fp[0] != self._tick_seen:  # pending until an iteration has run to its end()
            self.new_tick, self._tick_seen = True, self._fp[0]

    def end(self, busy: bool) -> None:
        """Acknowledge the fingerprint noted by `begin` unless this iteration had input to handle."""
        if not self.enabled:
            return
        self.new_tick = False
        if busy or self._fp == self._acked:
            return
        pipe = self.r.pipeline(transaction=False)
        pipe.hset(self.prefix + "lockstep:acks", self.process, ",".join(self._fp))
        pipe.xadd(self.prefix + "lockstep:acked", {"p": self.process}, maxlen=MAXLEN, approximate=True)
        pipe.execute()
        self._acked = self._fp

    def wait(self, block_ms: int) -> None:
        """Block until any watched stream moves past the fingerprint noted by `begin` (or `block_ms`)."""
        if not self._fp:
            self._fp, _behind = fingerprint(self.r, self.prefix)
        self.r.xread({self.prefix + s: i for s, i in zip(WATCHED, self._fp)}, count=1, block=block_ms)


def count_ws_event(r: redis.Redis, prefix: str, key: str, n: int = 1) -> None:
    """user_stream (ws_recv) / the paper exchange (ws_sent): `n` user-data events handled / queued. Handled events
    wake the processes (`lockstep:ws`, watched) and the driver: an event that was old news publishes nothing else
    they would wake on."""
    pipe = r.pipeline(transaction=True)
    pipe.incrby(prefix + "lockstep:" + key, n)
    if key == "ws_recv":
        pipe.xadd(prefix + "lockstep:ws", {"n": n}, maxlen=MAXLEN, approximate=True)
    pipe.xadd(prefix + "lockstep:acked", {"p": key}, maxlen=MAXLEN, approximate=True)
    pipe.execute()


class Conductor:
    """The replay driver's side: publish a point, then wait until it is settled."""

    def __init__(self, r: redis.Redis, prefix: str, log_path: str, wait_sec: float) -> None:
        self.r, self.prefix, self.log_path, self.wait_sec = r, prefix, log_path, wait_sec
        self.timeouts: list[dict] = []
        self._acked_last = "0-0"

    def tick(self, market_ms: int) -> None:
        """Publish the point the driver just played (and note where the acknowledgements stand before it)."""
        pipe = self.r.pipeline(transaction=True)
        pipe.xadd(self.prefix + "lockstep:tick", {"t": market_ms}, maxlen=MAXLEN, approximate=True)
        pipe.xrevrange(self.prefix + "lockstep:acked", "+", "-", count=1)
        rows = pipe.execute()[1]
        self._acked_last = _id(rows[0][0]) if rows else "0-0"

    def lagging(self, log_size: int) -> list[str]:
        """Who has not finished with the current point (empty: settled). Dead processes are not waited for."""
        p = self.prefix
        pipe = self.r.pipeline(transaction=True)  # one consistent view: fingerprint, acks and counters together
        for s in WATCHED:
            pipe.xrevrange(p + s, "+", "-", count=1)
        pipe.hgetall(p + "lockstep:acks")
        pipe.mget([p + "lockstep:ws_sent", p + "lockstep:ws_recv"])
        pipe.hget(p + "ingest:offset", "offset")
        for name in (*PARTICIPANTS, "user_stream", "signal_ingest"):
            pipe.exists(f"{p}hb:{name}")
        res = pipe.execute()
        n = len(WATCHED)
        fp = ",".join(_id(rows[0][0]) if rows else "0-0" for rows in res[:n])
        acks = {_id(k): _id(v) for k, v in res[n].items()}
        sent, recv = (int(x or 0) for x in res[n + 1])
        offset = int(res[n + 2] or 0)
        alive = dict(zip((*PARTICIPANTS, "user_stream", "signal_ingest"), res[n + 3:]))
        out = [name for name in PARTICIPANTS if alive[name] and acks.get(name) != fp]
        if alive["user_stream"] and recv < sent:
            out.append("user_stream")
        if alive["signal_ingest"] and offset < log_size:
            out.append("signal_ingest")
        return out

    def settle(self, log_size: int, market_ms: int) -> list[str]:
        """Block until the point is settled; after LOCKSTEP_WAIT_SEC give up and return who was still busy. Each
        check follows an acknowledgement (or 20 ms: ingest says nothing on that stream)."""
        deadline = time.monotonic() + self.wait_sec
        key = self.prefix + "lockstep:acked"
        while True:
            left = deadline - time.monotonic()
            res = self.r.xread({key: self._acked_last}, count=100, block=max(1, min(20, int(left * 1000))))
            if res:
                self._acked_last = _id(res[0][1][-1][0])
            late = self.lagging(log_size)
            if not late:
                return []
            if time.monotonic() >= deadline:
                self.timeouts.append({"market_ms": market_ms, "waiting_for": late})
                if "user_stream" in late:  # events lost on the way: counted as handled, later points unaffected
                    self.r.set(self.prefix + "lockstep:ws_recv", self.r.get(self.prefix + "lockstep:ws_sent") or 0)
                return late
