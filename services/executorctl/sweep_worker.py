"""`executorctl sweep-worker`: runs a sweep's combinations from the rq queue on the Redis the user names, each as
one `executorctl replay` in its own private stack (its own free ports and run directory under `--dir`).

Trust: jobs are plain JSON (rq's JSONSerializer, never pickle) and this worker runs one function only,
`run_combination` (any other job is failed unread). What a combination is (files, settings) is read from the
sweep's own keys; the market and signal files come from Redis by content hash, so a worker on another host
needs nothing but the Redis URL. While a replay runs the job keeps a heartbeat key; a worker killed mid-job
leaves a job without one, which `executorctl sweep` runs again (once).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import redis
from rq import Queue, SimpleWorker
from rq.serializers import JSONSerializer

from services.executorctl import sweep_plan
from services.executorctl.ctx import CtlError
from services.executorctl.procs import die_with_parent

QUEUE = "executor-sweep"
JOB_FUNC = "services.executorctl.sweep_worker.run_combination"
HB_TTL_SEC = 30
HB_EVERY_SEC = 5.0
HOME = Path(__file__).resolve().parents[2]


def key(sid: str, what: str) -> str:
    """The sweep's keys on the user's Redis."""
    return f"executor:sweep:{sid}:{what}"


def job_id(sid: str, cid: str, attempt: int) -> str:
    return f"sweep-{sid}-{cid}-a{attempt}"


def queue(r: redis.Redis) -> Queue:
    return Queue(QUEUE, connection=r, serializer=JSONSerializer)


class SweepWorker(SimpleWorker):
    """rq's in-process worker (a kill of the worker is a kill of the job: nothing runs on unseen), limited to
    the sweep's one job function."""

    def execute_job(self, job, queue):  # noqa: ANN001 - rq's signature
        if job.func_name != JOB_FUNC:  # refused before anything of it is imported or called
            self.handle_job_failure(job, queue, exc_string=f"refused: {job.func_name!r} is not {JOB_FUNC}")
            return None
        return super().execute_job(job, queue)


def _materialize(r: redis.Redis, sid: str, sha: str, name: str, workdir: Path) -> Path:
    """The file with content hash `sha`, from the sweep's keys, cached under the worker's directory."""
    p = workdir / "files" / f"{sha}-{name}"
    if not p.exists():
        data = r.hget(key(sid, "files"), sha)
        if data is None:
            raise CtlError(f"sweep {sid}: file {name} ({sha}) is not in Redis")
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(p.name + f".{os.getpid()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, p)
    return p


def _beat(r: redis.Redis, sid: str, cid: str, who: str, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            r.set(key(sid, f"hb:{cid}"), who, ex=HB_TTL_SEC)
        except redis.RedisError:
            pass  # a missed beat: the next one (5 s) may get through; the sweep waits HB_TTL_SEC before judging
        stop.wait(HB_EVERY_SEC)


def run_combination(sweep: str, combo: str, attempt: int) -> dict[str, Any]:
    """The job: one replay of combination `combo` of sweep `sweep`; its summary is stored in the sweep's results
    (and returned). A replay that fails raises, so rq marks the job failed and the sweep retries it once."""
    r = redis.Redis.from_url(os.environ["SWEEP_REDIS_URL"])
    workdir = Path(os.environ.get("SWEEP_WORKDIR", "var/sweep-worker")).resolve()
    who = f"{socket.gethostname()}:{os.getpid()}"
    raw = r.hget(key(sweep, "combos"), combo)
    if raw is None:
        raise CtlError(f"sweep {sweep}: no combination {combo}")
    c = sweep_plan.Combination(**json.loads(raw))
    stop = threading.Event()
    threading.Thread(target=_beat, args=(r, sweep, combo, who, stop), daemon=True).start()
    try:
        agg = _materialize(r, sweep, c.agg_sha, c.agg_name, workdir)
        sig = _materialize(r, sweep, c.signals_sha, c.signals_name, workdir)
        run_dir = workdir / "runs" / sweep / f"{combo}-a{attempt}"
        argv = [sys.executable, "-m", "services.executorctl", "replay", "--agg", str(agg), "--signals", str(sig),
                "--dir", str(run_dir), "--json", *c.options]
        for k, v in sorted(c.settings.items()):
            argv += ["--set", f"{k}={v}"]
        res = subprocess.run(argv, cwd=HOME, capture_output=True, text=True, check=False,
                             preexec_fn=die_with_parent)
        if res.returncode != 0:
            r.hset(key(sweep, "errors"), combo, f"attempt {attempt} on {who}: exit {res.returncode}: "
                                               f"{(res.stderr or res.stdout)[-400:]}")
            raise CtlError(f"replay of {combo} exited with {res.returncode}")
        summary = sweep_plan.summarize(json.loads(res.stdout), combo, who, attempt)
        r.hset(key(sweep, "results"), combo, json.dumps(sweep_plan.msgspec.to_builtins(summary)))
        return sweep_plan.msgspec.to_builtins(summary)
    finally:
        stop.set()
        r.delete(key(sweep, f"hb:{combo}"))


def run_worker(redis_url: str, workdir: str, burst: bool) -> int:
    """Work the sweep queue (until stopped, or until it is empty with `burst`)."""
    os.environ["SWEEP_REDIS_URL"] = redis_url
    os.environ["SWEEP_WORKDIR"] = str(Path(workdir).resolve())
    Path(workdir).mkdir(parents=True, exist_ok=True)
    r = redis.Redis.from_url(redis_url, socket_timeout=None, socket_connect_timeout=5)
    try:
        r.ping()
    except redis.RedisError as e:
        raise CtlError(f"sweep-worker: Redis unreachable at --redis: {e}") from None
    w = SweepWorker([queue(r)], connection=r, serializer=JSONSerializer)
    w.work(burst=burst, logging_level="INFO")
    return 0
