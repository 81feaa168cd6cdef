"""`executorctl sweep`: the same history over a grid of settings (and/or several signal and market files), one
`executorctl replay` per combination, as rq jobs on a Redis the user names, run by `executorctl sweep-worker`s
(as many as started, on any host reaching that Redis). This command stores the files and the combinations,
enqueues what is not finished yet (running it again with the same arguments resumes the same sweep), shows
progress (done / running / queued, time left), runs a failed or lost job once more, and gathers the results:
one table, a CSV, a heatmap of net R over two chosen settings. A combination that failed twice is reported.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

import msgspec
import redis
from rq.exceptions import NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from services.executorctl import replay_settings, sweep_plan
from services.executorctl.ctx import CtlError, Out
from services.executorctl.sweep_plan import Combination, Summary
from services.executorctl.sweep_worker import HB_TTL_SEC, JOB_FUNC, job_id, key, queue

ATTEMPTS = 2           # a failed or lost job is run once more, then reported
POLL_SEC = 2.0
JOB_TIMEOUT_SEC = 4 * 3600


class Options(msgspec.Struct, kw_only=True):
    """What `executorctl sweep` was asked."""
    redis_url: str
    aggs: list[str]
    signals: list[str]
    grid: dict[str, list[str]]
    fixed: dict[str, str] = {}
    replay_options: list[str] = []
    out_dir: str = "var/sweep"
    x: str | None = None
    y: str | None = None
    wait: bool = True
    timeout: float = 24 * 3600.0


def _file(path: str, what: str) -> tuple[str, str, bytes]:
    p = Path(path).expanduser()
    if not p.is_file():
        raise CtlError(f"{what} {path}: no such file")
    data = p.read_bytes()
    return hashlib.sha256(data).hexdigest()[:16], p.name, data


def prepare(r: redis.Redis, o: Options) -> tuple[str, list[Combination]]:
    """Store the files and the combinations under the sweep's keys; the sweep id and its combinations."""
    aggs = [_file(a, "--agg") for a in o.aggs]
    sigs = [_file(s, "--signals") for s in o.signals]
    pairs = [((a[0], a[1]), (s[0], s[1])) for a in aggs for s in sigs]
    combos = sweep_plan.combinations(pairs, o.grid, o.fixed, o.replay_options)
    for c in combos:  # a bad value is refused here, once, not by every job
        replay_settings.validate(c.settings)
    sid = sweep_plan.sweep_id(combos)
    pipe = r.pipeline(transaction=False)
    for sha, _name, data in aggs + sigs:
        pipe.hsetnx(key(sid, "files"), sha, data)
    for c in combos:
        pipe.hset(key(sid, "combos"), c.id, json.dumps(msgspec.to_builtins(c)))
    pipe.hsetnx(key(sid, "meta"), "grid", json.dumps(o.grid))
    pipe.execute()
    return sid, combos


class Tracker:
    """The state of every combination on the queue, and the once-more rule."""

    def __init__(self, r: redis.Redis, sid: str, combos: list[Combination]) -> None:
        self.r, self.sid, self.combos = r, sid, combos
        self.q = queue(r)
        self.started: dict[str, float] = {}

    def results(self) -> dict[str, Summary]:
        raw = self.r.hgetall(key(self.sid, "results"))
        return {k.decode(): msgspec.convert(json.loads(v), Summary) for k, v in raw.items()}

    def failed(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.r.hgetall(key(self.sid, "failed")).items()}

    def attempt(self, cid: str) -> int:
        return int(self.r.hget(key(self.sid, "attempts"), cid) or 0)

    def enqueue(self, cid: str, attempt: int) -> None:
        self.r.hset(key(self.sid, "attempts"), cid, attempt)
        self.q.enqueue_call(JOB_FUNC, kwargs={"sweep": self.sid, "combo": cid, "attempt": attempt},
                            job_id=job_id(self.sid, cid, attempt), timeout=JOB_TIMEOUT_SEC, result_ttl=7 * 86400,
                            failure_ttl=7 * 86400)

    def state(self, cid: str) -> tuple[str, str]:
        """(queued | running | failed | lost | none, why) of the combination's current attempt."""
        n = self.attempt(cid)
        if n == 0:
            return "none", ""
        try:
            job = Job.fetch(job_id(self.sid, cid, n), connection=self.r, serializer=JSONSerializer)
        except NoSuchJobError:
            return "lost", f"attempt {n}: the job is gone from Redis"
        status = job.get_status(refresh=True)
        st = status.value if hasattr(status, "value") else str(status)
        if st in ("queued", "deferred", "scheduled"):
            return "queued", ""
        if st == "started":
            since = self.started.setdefault(cid, time.monotonic())
            if not self.r.exists(key(self.sid, f"hb:{cid}")) and time.monotonic() - since > HB_TTL_SEC:
                return "lost", f"attempt {n}: its worker stopped beating (killed?)"
            return "running", ""
        if st == "finished":   # finished without a result (should not happen): treated as lost
            return "lost", f"attempt {n}: finished without a result"
        err = (self.r.hget(key(self.sid, "errors"), cid) or b"").decode() or (job.latest_result().exc_string
                                                                             if job.latest_result() else "")
        return "failed", f"attempt {n}: {st}: {err.strip()[-300:]}"

    def step(self) -> dict[str, list[str]]:
        """One look at every combination; enqueue, retry once, or give up; the combinations per state."""
        done, failed = self.results(), self.failed()
        out: dict[str, list[str]] = {"done": [], "running": [], "queued": [], "failed": []}
        for c in self.combos:
            if c.id in done:
                out["done"].append(c.id)
                continue
            if c.id in failed:
                out["failed"].append(c.id)
                continue
            st, why = self.state(c.id)
            if st in ("none", "lost", "failed"):
                n = self.attempt(c.id)
                if n >= ATTEMPTS:
                    self.r.hset(key(self.sid, "failed"), c.id, why)
                    out["failed"].append(c.id)
                    continue
                if n:  # the once-more: said, never silent
                    self.r.hset(key(self.sid, "retried"), c.id, why)
                self.started.pop(c.id, None)
                self.enqueue(c.id, n + 1)
                st = "queued"
            out[st].append(c.id)
        return out


def run(out: Out, o: Options) -> int:
    """Enqueue, follow, gather; exit 0 when every combination finished, 1 when some failed twice, 3 on timeout."""
    r = redis.Redis.from_url(o.redis_url)
    try:
        r.ping()
    except redis.RedisError as e:
        raise CtlError(f"sweep: Redis unreachable at --redis: {e}") from None
    sid, combos = prepare(r, o)
    say = out.line if not out.as_json else (lambda *_a, **_k: None)
    tr = Tracker(r, sid, combos)
    first = tr.step()
    say(f"sweep {sid}: {len(combos)} combination(s) ({len(first['done'])} already done), queue "
        f"'{queue(r).name}' on {_safe_url(o.redis_url)}; start workers with: executorctl sweep-worker --redis URL")
    if not o.wait:
        return 0
    t0, states = time.monotonic(), first
    last_line = ""
    while states["running"] or states["queued"]:
        if time.monotonic() - t0 > o.timeout:
            say("sweep: timed out waiting; run the same command again to resume", "yellow")
            return _finish(out, r, sid, combos, o, timed_out=True)
        time.sleep(POLL_SEC)  # polling the queue's state, shown as progress
        states = tr.step()
        line = _progress(tr, states, time.monotonic() - t0)
        if line != last_line:
            say(line)
            last_line = line
    return _finish(out, r, sid, combos, o)


def _safe_url(url: str) -> str:
    """The Redis URL without its password (it is printed)."""
    if "@" not in url:
        return url
    scheme, _, rest = url.partition("://")
    return f"{scheme}://***@{rest.split('@', 1)[1]}"


def _progress(tr: Tracker, states: dict[str, list[str]], elapsed: float) -> str:
    res = tr.results()
    secs = [s.wall_sec for s in res.values()]
    left = sweep_plan.time_left(secs, len(states["running"]) + len(states["queued"]), len(states["running"]))
    eta = "?" if left is None else f"{left / 60:.1f} min"
    return (f"[{elapsed:6.0f}s] done {len(states['done'])}, running {len(states['running'])}, queued "
            f"{len(states['queued'])}, failed {len(states['failed'])}; time left ~{eta}")


def _finish(out: Out, r: redis.Redis, sid: str, combos: list[Combination], o: Options, timed_out: bool = False) -> int:
    from services.executorctl import sweep_table
    tr = Tracker(r, sid, combos)
    res, failed = tr.results(), tr.failed()
    retried = {k.decode(): v.decode() for k, v in r.hgetall(key(sid, "retried")).items()}
    rows = sweep_table.rows(combos, res, failed)
    d = Path(o.out_dir)
    d.mkdir(parents=True, exist_ok=True)
    csv_path, png = d / f"sweep-{sid}.csv", d / f"sweep-{sid}-heatmap.png"
    sweep_table.write_csv(csv_path, rows)
    x, y = _axes(o)
    drew = sweep_table.heatmap(png, rows, x, y) if x and y else False
    if out.as_json:
        out.json({"sweep": sid, "rows": rows, "failed": failed, "retried": retried, "csv": str(csv_path),
                  "heatmap": str(png) if drew else None, "timed_out": timed_out})
    else:
        sweep_table.render(out, rows)
        for cid, why in retried.items():
            out.line(f"  {cid}: run again once ({why})", "yellow")
        for cid, why in failed.items():
            out.line(f"  {cid}: FAILED twice, no result ({why})", "red")
        out.line(f"CSV: {csv_path}" + (f"; heatmap of net R over {x} x {y}: {png}" if drew else ""))
    if timed_out:
        return 3
    return 1 if failed else 0


def _axes(o: Options) -> tuple[str | None, str | None]:
    """The heatmap's two settings: --x/--y, else the first two of the grid."""
    names = list(o.grid)
    x = o.x or (names[0] if names else None)
    y = o.y or (next((n for n in names if n != x), None))
    return x, y


def load_replay_options(args: Any) -> list[str]:
    """The replay options every combination shares (as command-line words for `executorctl replay`)."""
    opts: list[str] = ["--speed", args.speed, "--timeout", str(args.replay_timeout)]
    if args.start:
        opts += ["--start", args.start]
    if args.lead is not None:
        opts += ["--lead", str(args.lead)]
    if args.trade_mode:
        opts += ["--trade-mode", args.trade_mode]
    if args.borrow_mode:
        opts += ["--borrow-mode", args.borrow_mode]
    return opts
