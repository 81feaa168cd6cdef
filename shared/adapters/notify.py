"""Webhook notifications (n8n / any URL) and Telegram messages, delivered by the `notifier` rq worker.

With TELEGRAM_CHAT_ID set, `enqueue_webhook` also queues the alert for Telegram (`enqueue_telegram`, its own
job, same retries; the throttle is upstream of both).

`enqueue_webhook(redis_conn, cfg, payload)` only puts a job on the rq queue `{EXEC_PREFIX}notifications`
(one per prefix, so two instances sharing a Redis never deliver each other's webhooks; one Redis round trip,
no HTTP): trading never waits for a webhook. The job is JSON (rq's JSONSerializer: never pickle) and carries the
payload only. The worker (`python -m services.notifier`) runs nothing but
`services.notifier.jobs.deliver_webhook(payload)`, which POSTs the payload as JSON to the worker's own
N8N_WEBHOOK_URL (basic auth from its own N8N_BASIC_AUTH_USER/PASSWORD) and raises on a non-2xx answer so rq
retries it (Retry(max=5, interval=[1, 2, 5, 10, 30])); a delivery that still fails stays in rq's
FailedJobRegistry for the operator. Jobs are readable (and writable by the services) in Redis, so nothing in a
job decides where a webhook goes or with which credentials. N8N_WEBHOOK_URL set in the enqueuer's settings is
only the switch that says webhooks are wanted.

Payload (a JSON object):

    {
      "event":     "watchdog.finding",         # what happened (dotted name)
      "severity":  "ERROR",                    # INFO | WARN | ERROR | CRITICAL
      "message":   "filled position has ...",  # one line for a person
      "trade_key": "250113-2000-L-abc123",     # "" when not about a trade
      "ts":        1736798412.5,               # epoch seconds (the service's clock)
      "details":   {"check": "I1", ...}        # anything else, JSON-safe
    }

`make_payload` builds one; extra keys are kept.
"""
from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from rq import Queue, Retry
from rq.job import Job
from rq.serializers import JSONSerializer

QUEUE_BASE = "notifications"
JOB_FUNC = "services.notifier.jobs.deliver_webhook"
RETRY_INTERVALS = [1, 2, 5, 10, 30]
RETRY_MAX = 5
JOB_TIMEOUT_SEC = 30
FAILURE_TTL_SEC = 7 * 24 * 3600
RESULT_TTL_SEC = 3600

log = logging.getLogger(__name__)


def queue_name(prefix: str) -> str:
    """The rq queue of one EXEC_PREFIX: `{prefix}notifications` (rq keys it as `rq:queue:{prefix}notifications`)."""
    return f"{prefix}{QUEUE_BASE}"


def queue(redis_conn: Any, prefix: str) -> Queue:
    """The notifier's rq queue of one EXEC_PREFIX, with JSON jobs (never pickle)."""
    return Queue(queue_name(prefix), connection=redis_conn, serializer=JSONSerializer)


def default_retry() -> Retry:
    """The production retry policy: 5 retries after 1, 2, 5, 10 and 30 s."""
    return Retry(max=RETRY_MAX, interval=list(RETRY_INTERVALS))


def _json_safe(v: Any) -> Any:
    if isinstance(v, Decimal):
        return str(v)
    if isinstance(v, dict):
        return {str(k): _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple, set)):
        return [_json_safe(x) for x in v]
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    return str(v)


def make_payload(event: str, severity: str, message: str, ts: float, trade_key: str = "",
                 details: dict[str, Any] | None = None) -> dict[str, Any]:
    """A payload in the documented shape (Decimals and other values made JSON-safe)."""
    return {"event": event, "severity": severity, "message": message, "trade_key": trade_key, "ts": ts,
            "details": _json_safe(details or {})}


def enqueue_webhook(redis_conn: Any, cfg: Any, payload: dict[str, Any], *, retry: Retry | None = None) -> Job | None:
    """Queue a webhook delivery of `payload` to N8N_WEBHOOK_URL; None (logged) when no URL is configured.

    Never does HTTP. `retry` overrides the production policy (tests use zero intervals).
    """
    if cfg.TELEGRAM_CHAT_ID:
        enqueue_telegram(redis_conn, cfg, payload, retry=retry)
    url = cfg.N8N_WEBHOOK_URL
    if not url:
        log.info("webhook skipped: N8N_WEBHOOK_URL is empty (event=%s)", payload.get("event"))
        return None
    return queue(redis_conn, cfg.EXEC_PREFIX).enqueue(JOB_FUNC, _json_safe(payload),
                     retry=retry or default_retry(), job_timeout=JOB_TIMEOUT_SEC,
                     failure_ttl=FAILURE_TTL_SEC, result_ttl=RESULT_TTL_SEC,
                     description=f"webhook {payload.get('event', '')} {payload.get('severity', '')}")


TELEGRAM_JOB_FUNC = "services.notifier.telegram.deliver_telegram"


def enqueue_telegram(redis_conn: Any, cfg: Any, payload: dict[str, Any], *, retry: Retry | None = None) -> Job:
    """Queue the same alert for Telegram (a job of its own: a failing webhook never re-sends it). The job holds
    the payload only; the worker's environment has the bot token and the chat (services/notifier/telegram.py)."""
    return queue(redis_conn, cfg.EXEC_PREFIX).enqueue(TELEGRAM_JOB_FUNC, _json_safe(payload), retry=retry or default_retry(),
                     job_timeout=JOB_TIMEOUT_SEC, failure_ttl=FAILURE_TTL_SEC, result_ttl=RESULT_TTL_SEC,
                     description=f"telegram {payload.get('event', '')} {payload.get('severity', '')}")
