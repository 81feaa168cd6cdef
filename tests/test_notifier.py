"""Webhook notifications: enqueue never blocks and never carries the password; a real rq worker delivers to a
real loopback HTTP server with basic auth, retries a failing one and leaves it in the failed registry."""
from __future__ import annotations

import base64
import time

from rq import Queue, Retry
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from shared.adapters.notify import RETRY_INTERVALS, enqueue_webhook, make_payload, queue_name
from shared.config import load_config
from tests.wd_helpers import WebhookReceiver, free_port, service_env, start_service, stop_service, wait_for

PASSWORD = "s3cr3t-pa55"
PREFIX = "t:"  # service_env's prefix: the worker's queue is t:notifications
QUEUE_NAME = queue_name(PREFIX)


def cfg_for(url: str, user: str = "n8n", prefix: str = PREFIX):
    # The enqueuer's config may hold the password; it must never reach the job.
    return load_config({"N8N_WEBHOOK_URL": url, "N8N_BASIC_AUTH_USER": user, "N8N_BASIC_AUTH_PASSWORD": PASSWORD,
                        "EXEC_PREFIX": prefix})


def run_burst_worker(redis_url: str, tmp_path, url: str, user: str = "n8n", password: str = PASSWORD) -> str:
    """Run the real notifier (`python -m services.notifier --burst`, as the `notifier` Redis user, the webhook
    target in its own environment) until the queue is drained; its log must not contain the password or the
    URL's token path."""
    env = service_env(redis_url, "notifier", N8N_WEBHOOK_URL=url, N8N_BASIC_AUTH_USER=user,
                      N8N_BASIC_AUTH_PASSWORD=password)
    log = tmp_path / "notifier.log"
    proc = start_service("services.notifier", env, "--burst", log_path=log)
    assert proc.wait(timeout=40) == 0, log.read_text()
    text = log.read_text()
    assert PASSWORD not in text and "secret-token" not in text
    return text


def payload(msg: str = "stop missing") -> dict:
    return make_payload("watchdog.I1", "CRITICAL", msg, 1736798412.5, "250113-2000-L-abc123", {"check": "I1"})


def test_no_url_is_a_logged_noop(r):
    assert enqueue_webhook(r, load_config({"EXEC_PREFIX": PREFIX}), payload()) is None
    assert Queue(QUEUE_NAME, connection=r, serializer=JSONSerializer).count == 0


def test_enqueue_is_fast_has_retry_policy_and_no_password(r):
    dead = f"http://127.0.0.1:{free_port()}/hook"
    t0 = time.perf_counter()
    job = enqueue_webhook(r, cfg_for(dead), payload())
    elapsed = time.perf_counter() - t0
    assert elapsed < 0.5, elapsed  # one Redis round trip, no HTTP
    job = Job.fetch(job.id, connection=r, serializer=JSONSerializer)
    assert job.func_name == "services.notifier.jobs.deliver_webhook"
    assert list(job.args) == [payload()]  # JSON: the payload only: where it goes and how is the worker's setting
    assert job.retries_left == 5 and job.retry_intervals == RETRY_INTERVALS == [1, 2, 5, 10, 30]
    for key in r.keys("*"):
        if r.type(key) == b"hash":
            assert PASSWORD.encode() not in b"".join(v for v in r.hgetall(key).values())
    assert Queue(QUEUE_NAME, connection=r, serializer=JSONSerializer).count == 1


def test_200_webhook_receives_json_with_basic_auth(r, redis_url, tmp_path):
    with WebhookReceiver(200) as rx:
        job = enqueue_webhook(r, cfg_for(rx.url), payload("hello"))
        run_burst_worker(redis_url, tmp_path, rx.url)
        assert rx.json_bodies() == [payload("hello")]
        auth = rx.requests[0]["headers"]["Authorization"]
        assert auth == "Basic " + base64.b64encode(f"n8n:{PASSWORD}".encode()).decode()
        assert rx.requests[0]["headers"]["Content-Type"] == "application/json"
    assert Job.fetch(job.id, connection=r, serializer=JSONSerializer).get_status() == "finished"


def test_no_auth_user_means_no_auth_header(r, redis_url, tmp_path):
    with WebhookReceiver(204) as rx:
        enqueue_webhook(r, cfg_for(rx.url, user=""), payload())
        run_burst_worker(redis_url, tmp_path, rx.url, user="")
        assert len(rx.requests) == 1 and "Authorization" not in rx.requests[0]["headers"]


def _assert_failed_without_secrets(r, job_id: str) -> str:
    job = Job.fetch(job_id, connection=r, serializer=JSONSerializer)
    assert job.get_status() == "failed"
    assert job_id in FailedJobRegistry(QUEUE_NAME, connection=r).get_job_ids()
    exc = job.latest_result().exc_string or ""
    assert PASSWORD not in exc and "secret-token" not in exc
    return exc


def test_500_webhook_is_retried_by_a_real_worker_then_failed(r, redis_url, tmp_path):
    with WebhookReceiver(500) as rx:
        t0 = time.perf_counter()
        job = enqueue_webhook(r, cfg_for(rx.url), payload(), retry=Retry(max=5, interval=0))
        assert time.perf_counter() - t0 < 0.5
        run_burst_worker(redis_url, tmp_path, rx.url)
        assert len(rx.requests) == 6  # first try + 5 retries
    exc = _assert_failed_without_secrets(r, job.id)
    assert "HTTP 500" in exc


def test_unreachable_webhook_is_retried_then_failed(r, redis_url, tmp_path):
    dead = f"http://127.0.0.1:{free_port()}/webhook/secret-token"
    t0 = time.perf_counter()
    job = enqueue_webhook(r, cfg_for(dead), payload(), retry=Retry(max=2, interval=0))
    assert time.perf_counter() - t0 < 0.5
    run_burst_worker(redis_url, tmp_path, dead)
    exc = _assert_failed_without_secrets(r, job.id)
    assert "ConnectionError" in exc
    assert Job.fetch(job.id, connection=r, serializer=JSONSerializer).retries_left == 0


def test_one_queue_per_prefix_two_instances_never_deliver_each_others(r, redis_url, tmp_path):
    """Two instances (prefixes t: and other:) on one Redis: t:'s worker delivers t:'s webhook only; the other
    instance's job stays on its own queue for its own worker."""
    with WebhookReceiver(200) as mine, WebhookReceiver(200) as theirs:
        enqueue_webhook(r, cfg_for(mine.url), payload("mine"))
        other = enqueue_webhook(r, cfg_for(theirs.url, prefix="other:"), payload("theirs"))
        run_burst_worker(redis_url, tmp_path, mine.url)
        assert mine.json_bodies() == [payload("mine")]
        assert theirs.requests == []
    assert Queue("other:notifications", connection=r, serializer=JSONSerializer).job_ids == [other.id]
    assert Queue(QUEUE_NAME, connection=r, serializer=JSONSerializer).count == 0


def test_idle_worker_has_no_socket_timeouts(r, redis_url, tmp_path):
    """A long-running worker idles in rq's blocking dequeue (BLPOP, minutes): with Redis healthy it must not log
    "Timeout reading from socket" (redis-py's default 5 s socket timeout was shorter than the BLPOP), and it
    still delivers afterwards."""
    log = tmp_path / "notifier.log"
    with WebhookReceiver(200) as rx:
        _idle_then_deliver(r, redis_url, log, rx)


def _idle_then_deliver(r, redis_url, log, rx) -> None:
    proc = start_service("services.notifier", service_env(redis_url, "notifier", N8N_WEBHOOK_URL=rx.url,
                                                          N8N_BASIC_AUTH_PASSWORD=PASSWORD), log_path=log)
    try:
        wait_for(lambda: r.exists(PREFIX + "hb:notifier") and "cleaning registries" in log.read_text(), 20,
                 what="worker idle in its dequeue")
        # Exposure, not synchronisation: the worker must stay idle past redis-py's 5 s default socket timeout.
        idle_until = time.monotonic() + 7
        while time.monotonic() < idle_until:
            assert "Timeout reading from socket" not in log.read_text(), log.read_text()
            time.sleep(0.5)
        enqueue_webhook(r, cfg_for(rx.url), payload("after idle"))
        wait_for(rx.json_bodies, 15, what="delivery after the idle period")
    finally:
        stop_service(proc)
    text = log.read_text()
    assert "Timeout reading from socket" not in text and "could not connect" not in text, text
