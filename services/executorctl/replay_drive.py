"""The replay's market driver: lock-step (shared/adapters/lockstep.py). Play a point on the paper exchange, feed
the --signals lines due by then, publish the point, wait until every process has acted on it; at a finite --speed
never ahead of the wall clock. Returns how it went (Drive): outcome, points, wall time, achieved speed."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import msgspec
import redis
import http.client
import json

from services.executorctl.ctx import CtlError, Out, fmt_ts
from services.executorctl.replay_lines import SignalLine
from shared.adapters.lockstep import Conductor
from shared.adapters.redis_streams import publish
from shared.domain.exit_decide import waits_for_market
from shared.domain.messages import Event
from shared.domain.position import State, decode_state

IDLE_RECONNECT_SEC = 60.0  # the exchange closes keep-alive connections idle for 120 s
LOCKSTEP_WAIT_SEC = 10.0   # longest wall wait for one market point before moving on (lockstep_timeout)
QUIET_JUMP_MAX_SEC = 86_400  # a quiet position with no signal to come: at most a market day per call


def _idle(r: redis.Redis, fed: int) -> bool:
    """Every fed line has been read (a signal or a reject), the engine has taken every signal, no position."""
    if r.xlen("exec:signals") + r.xlen("exec:rejects") < fed:
        return False
    try:
        groups = {(g["name"].decode() if isinstance(g["name"], bytes) else g["name"]): g
                  for g in r.xinfo_groups("exec:signals")}
    except redis.ResponseError:
        groups = {}
    g = groups.get("position_engine")
    if r.xlen("exec:signals") and (g is None or g.get("pending") or g.get("lag")):
        return False
    raw = r.get("exec:state")
    if raw is None:
        return True
    return msgspec.json.decode(raw).get("position") is None


def _feed(log: Path, ln: SignalLine, now: float) -> int:
    """Append one line to DELTASCOUT_LOG, remembering the byte offset ingest will report for it; the new size."""
    with open(log, "ab") as fh:
        ln.offset = fh.tell()
        fh.write(ln.raw + b"\n")
        ln.fed_at = now
        return fh.tell()


class Drive(msgspec.Struct, kw_only=True):
    """How the market was driven: outcome, points played, wall time, and every point that was not settled."""
    outcome: str = ""
    points: int = 0
    wall_sec: float = 0.0
    market_sec: float = 0.0
    achieved_speed: float | None = None
    lockstep_timeouts: list[dict[str, Any]] = []
    # where the wall time went: playing points on the exchange, waiting for the processes (settle), the rest
    profile: dict[str, float] = {}
    resources: dict[str, Any] = {}


class Driver:
    """Lock-step: play a point, feed the lines due, publish the point, wait until every process has acted on it
    (shared/adapters/lockstep.py); at a finite speed, never ahead of the wall clock. At the fastest speed a
    stretch with no position, no order and no signal due is played in one call (nothing can happen in it)."""

    def __init__(self, stack, lines: list[SignalLine], start_ts: int, speed: float, wait_sec: float,
                 every_point: bool = False):
        self.stack, self.lines, self.start_ts, self.speed = stack, lines, start_ts, speed
        self.every_point = every_point
        self.trade_mode = stack.env.get("TRADE_MODE", "spot").strip().lower()
        self.log = Path(stack.env["DELTASCOUT_LOG"])
        self.conductor = Conductor(stack.r, "exec:", str(self.log), wait_sec)
        self.fed = 0
        self.log_size = 0
        self.now_ms = start_ts * 1000
        self.done = False
        self.open_orders = 0
        # one kept-alive connection, plain http.client: a point costs one small request, not a session's overhead
        self.http = http.client.HTTPConnection("127.0.0.1", int(stack.env["PAPER_PORT"]), timeout=60)
        self._last_http = time.monotonic()
        self.spent = {"advance_sec": 0.0, "settle_sec": 0.0, "single_points": 0, "jumps": 0, "quiet_jumps": 0}
        self.state = State()   # the state document as the last settled point left it

    def settle_point(self) -> None:
        """Feed what is due at the current market time, publish it, wait for every process."""
        now = self.now_ms / 1000
        while self.fed < len(self.lines) and (self.lines[self.fed].ts is None or self.lines[self.fed].ts <= now):
            self.log_size = _feed(self.log, self.lines[self.fed], now)
            self.fed += 1
        t = time.monotonic()
        self.conductor.tick(self.now_ms)
        late = self.conductor.settle(self.log_size, self.now_ms)
        self.spent["settle_sec"] += time.monotonic() - t
        if late:
            publish(self.stack.r, "exec:events", Event(service="replay", kind="lockstep_timeout", at=now, data={
                "waiting_for": late, "wait_sec": self.conductor.wait_sec}), 100_000)
        raw = self.stack.r.get("exec:state")   # read once per point: the processes are done with it
        self.state = decode_state(raw) if raw is not None else State()

    def flat(self) -> bool:
        """No order on the exchange and no position, as the point left them."""
        return self.open_orders == 0 and self.state.position is None

    def jump(self) -> dict[str, Any] | None:
        """At the fastest speed, what may be played in one call: flat, every point up to the next signal (nothing
        can happen in it); a position whose exits wait for the market (`waits_for_market`), every point up to
        the next signal or the first point that touches an order. None: one point."""
        nxt = self.lines[self.fed].ts if self.fed < len(self.lines) else None
        pos = self.state.position
        if pos is None:
            if self.open_orders == 0 and nxt is not None and nxt > self.now_ms / 1000 + 15:
                return {"to_ts": int(nxt)}
            return None
        if waits_for_market(pos, self.trade_mode) and not self.every_point:
            self.spent["quiet_jumps"] += 1
            return {"to_ts": int(nxt) if nxt is not None else self.now_ms // 1000 + QUIET_JUMP_MAX_SEC,
                    "until_active": True}
        return None

    def step(self, t0_wall: float) -> int:
        """Play the next point, or at the fastest speed the stretch `jump` allows."""
        body: dict[str, Any] = {"points": 1}
        if self.speed == float("inf"):
            body = self.jump() or body
        doc = self._advance(body)
        if doc["advanced"] == 0 and "to_ts" in body:
            return self.step_one()
        self._took(doc)
        if self.speed != float("inf"):  # never ahead of the wall clock at the asked speed
            ahead = t0_wall + (self.now_ms / 1000 - self.start_ts) / self.speed - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)  # pacing: the market must not run faster than --speed
        return doc["advanced"]

    def step_one(self) -> int:
        doc = self._advance({"points": 1})
        self._took(doc)
        return doc["advanced"]

    def _advance(self, body: dict[str, Any]) -> dict[str, Any]:
        """POST /admin/advance on the kept-alive connection. Never re-sent: a lost answer could mean a point
        played twice. The exchange closes connections idle for 120 s, so a long pause reconnects first."""
        if time.monotonic() - self._last_http > IDLE_RECONNECT_SEC:
            self.http.close()
        t = time.monotonic()
        self.spent["jumps" if "to_ts" in body else "single_points"] += 1
        try:
            self.http.request("POST", "/admin/advance", body=json.dumps(body).encode(),
                              headers={"Content-Type": "application/json"})
            res = self.http.getresponse()
            raw = res.read()
        except (http.client.HTTPException, OSError) as e:
            raise CtlError(f"replay: the paper exchange did not answer /admin/advance {body}: {e}") from None
        self._last_http = time.monotonic()
        self.spent["advance_sec"] += self._last_http - t
        if res.status != 200:
            raise CtlError(f"replay: the paper exchange refused /admin/advance {body}: {res.status} {raw[:200]!r}")
        return json.loads(raw)

    def _took(self, doc: dict[str, Any]) -> None:
        self.now_ms = int(doc["market_ts_ms"])
        self.done = bool(doc["replay"]["done"])
        self.open_orders = int(doc.get("open_orders", 0))


def drive(out: Out, stack, lines: list[SignalLine], start_ts: int, end_ts: int,
           speed: float, timeout: float, say, every_point: bool = False) -> Drive:
    drv = Driver(stack, lines, start_ts, speed, LOCKSTEP_WAIT_SEC, every_point)
    res = Drive()
    closed_seen = 0
    t0 = time.monotonic()
    deadline = t0 + timeout
    sampler = ResourceSampler(stack)
    progress = None
    if out.rich:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), console=out.console, transient=False)
        task = progress.add_task("market", total=max(1, end_ts - start_ts), info="")
        progress.start()
    try:
        while True:
            fed_before = drv.fed
            drv.settle_point()
            now = drv.now_ms / 1000
            if progress is None and drv.fed > fed_before:
                say(f"[{fmt_ts(now)}] signal line(s) {fed_before + 1}-{drv.fed} of {len(lines)} fed")
            closed = drv.state.closed_count
            if closed > closed_seen:
                closed_seen = closed
                if progress is None:
                    say(f"[{fmt_ts(now)}] {closed} trade(s) closed")
            if progress is not None:
                progress.update(task, completed=max(0, now - start_ts),
                                info=f"{fmt_ts(now)}  signals {drv.fed}/{len(lines)}  closed {closed_seen}")
            if drv.fed == len(lines) and drv.flat() and _idle(stack.r, drv.fed):
                res.outcome = "finished: every signal handled, no position left"
                break
            if drv.done:
                if drv.fed < len(lines):
                    say(f"{len(lines) - drv.fed} signal line(s) later than the market data were not fed")
                res.outcome = "finished: end of the market data"
                break
            if time.monotonic() > deadline:
                res.outcome = "timed out"
                break
            for name, p in stack.procs.items():
                if p.poll() is not None:
                    raise CtlError(f"replay: {name} exited with {p.returncode}; see {stack.run_dir / 'logs' / name}.log")
            res.points += drv.step(t0)
            sampler.maybe_sample()
    finally:
        if progress is not None:
            progress.stop()
    res.wall_sec = round(time.monotonic() - t0, 3)
    res.market_sec = drv.now_ms / 1000 - start_ts
    res.achieved_speed = round(res.market_sec / res.wall_sec, 1) if res.wall_sec > 0 else None
    res.lockstep_timeouts = drv.conductor.timeouts
    res.profile = {k: round(v, 3) for k, v in drv.spent.items()}
    res.profile["other_sec"] = round(res.wall_sec - drv.spent["advance_sec"] - drv.spent["settle_sec"], 3)
    sampler.sample()
    res.resources = sampler.peaks()
    return res


def rss_kb(pid: int) -> int:
    """A process's resident set (VmRSS, KiB) from /proc; 0 when it is gone or /proc is not there."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return 0
    return 0


class ResourceSampler:
    """Peak RSS of every process of the private stack and Redis's peak memory, sampled every SAMPLE_SEC of
    wall time (and once at the end): the figures a month replay must keep bounded."""
    SAMPLE_SEC = 2.0

    def __init__(self, stack) -> None:
        self.stack = stack
        self.rss: dict[str, int] = {}
        self.redis_peak = 0
        self._next = 0.0

    def maybe_sample(self) -> None:
        if time.monotonic() >= self._next:
            self.sample()

    def sample(self) -> None:
        self._next = time.monotonic() + self.SAMPLE_SEC
        for name, p in self.stack.procs.items():
            self.rss[name] = max(self.rss.get(name, 0), rss_kb(p.pid))
        self.rss["executorctl"] = max(self.rss.get("executorctl", 0), rss_kb(os.getpid()))
        try:
            self.redis_peak = max(self.redis_peak, int(self.stack.r.info("memory").get("used_memory_peak", 0)))
        except redis.RedisError:
            pass  # sampled again later; a figure, not a decision

    def peaks(self) -> dict[str, Any]:
        return {"rss_peak_kb": dict(self.rss), "redis_used_memory_peak": self.redis_peak}
