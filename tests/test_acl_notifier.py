"""The notifier's queue as an attack path: any service user may put jobs on rq's keys, so the worker must never
run code from a job. A pickled payload (whose unpickling would run a function) and a JSON job naming a foreign
function are both refused and logged by the real worker (`python -m services.notifier --burst`), and nothing of
theirs runs; a job cannot redirect the webhook either (the URL and credentials are the worker's)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from rq import Queue
from rq.job import Job
from rq.serializers import JSONSerializer

from shared.adapters.notify import JOB_FUNC, enqueue_webhook, make_payload, queue_name
from shared.config import load_config
from tests.redis_helpers import user_url
from tests.wd_helpers import WebhookReceiver, service_env, start_service

import redis

PREFIX = "t:"


class Evil:
    """Unpickling this creates a directory: proof that pickle ran code from the job."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):
        return (os.mkdir, (self.path,))


def run_worker(redis_url: str, tmp_path: Path, webhook: str) -> list[dict]:
    env = service_env(redis_url, "notifier", PREFIX, N8N_WEBHOOK_URL=webhook)
    log = tmp_path / "notifier.log"
    proc = start_service("services.notifier", env, "--burst", log_path=log)
    assert proc.wait(timeout=60) == 0, log.read_text()
    lines = []
    for ln in log.read_text().splitlines():
        try:
            lines.append(json.loads(ln))
        except ValueError:
            continue
    return lines


def test_pickled_and_foreign_jobs_are_refused_and_logged_nothing_runs(redis_url, r, tmp_path):
    attacker = redis.Redis.from_url(user_url(redis_url, "signal_ingest", PREFIX))  # any service may enqueue
    pickled_dir, foreign_dir = tmp_path / "pickled", tmp_path / "foreign"
    # 1. rq's default (pickle) serializer, the webhook's own name, a payload whose unpickling runs os.mkdir
    pq = Queue(queue_name(PREFIX), connection=attacker)
    pickled = pq.enqueue(JOB_FUNC, Evil(str(pickled_dir)))
    # 2. a JSON job naming a function that is not the webhook
    jq = Queue(queue_name(PREFIX), connection=attacker, serializer=JSONSerializer)
    foreign = jq.enqueue("os.mkdir", str(foreign_dir))
    # 3. a JSON job for the webhook that tries to choose its own target: the worker's setting wins
    with WebhookReceiver(200) as mine, WebhookReceiver(200) as theirs:
        hijack = jq.enqueue(JOB_FUNC, make_payload("x", "INFO", "hi", 0.0), theirs.url, "user")
        ok = enqueue_webhook(attacker, load_config({"N8N_WEBHOOK_URL": mine.url, "EXEC_PREFIX": PREFIX}),
                             make_payload("watchdog.I1", "CRITICAL", "real", 0.0))
        logs = run_worker(redis_url, tmp_path, mine.url)
        assert theirs.requests == [] and [b["message"] for b in mine.json_bodies()] == ["real"]
    assert not pickled_dir.exists() and not foreign_dir.exists()
    fetch = lambda j: Job.fetch(j.id, connection=r, serializer=JSONSerializer)  # noqa: E731
    assert fetch(pickled).get_status() == "failed" and fetch(foreign).get_status() == "failed"
    assert fetch(hijack).get_status() == "failed" and fetch(ok).get_status() == "finished"
    refused = {ln["job"]: ln["error"] for ln in logs if ln.get("event") == "job_refused"}
    assert set(refused) == {pickled.id, foreign.id, hijack.id}, logs
    assert "not a JSON job" in refused[pickled.id] and "'os.mkdir'" in refused[foreign.id]
    assert "payload only" in refused[hijack.id]
