"""The notifier's rq worker, closed: jobs are JSON (never pickle), and the only function a job may name is the
webhook delivery. A job naming anything else, or asking for a callback, fails without running anything and is
logged; the webhook's URL and credentials are the worker's own settings, never read from the job."""
from __future__ import annotations

from typing import Any

from rq import Queue, Worker
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.serializers import JSONSerializer

from services.notifier import jobs, telegram
from shared.adapters.notify import JOB_FUNC, TELEGRAM_JOB_FUNC
from shared.jsonlog import JsonLogger

ALLOWED = {JOB_FUNC: jobs.deliver_webhook, TELEGRAM_JOB_FUNC: telegram.deliver_telegram}


class ForeignJobError(RuntimeError):
    """A job named a function (or an instance, or a callback) that the notifier does not run."""


class WebhookJob(Job):
    """An rq job that resolves only the whitelisted function and never a callback."""

    @property
    def func(self) -> Any:  # type: ignore[override]
        try:
            name = self.func_name
        except DeserializationError:
            raise ForeignJobError(f"job {self.id} is not a JSON job (pickle?): never decoded") from None
        if self.instance is not None or name not in ALLOWED:
            raise ForeignJobError(f"job {self.id} names {name!r}: the notifier runs only {', '.join(ALLOWED)}")
        if len(self.args) != 1 or not isinstance(self.args[0], dict) or self.kwargs:
            raise ForeignJobError(f"job {self.id}: a notifier job takes the payload only (the target is the "
                                  f"worker's setting)")
        return ALLOWED[name]

    # A callback is a function named in the job hash, called by the worker: never from data.
    @property
    def success_callback(self) -> None:  # type: ignore[override]
        return None

    @property
    def failure_callback(self) -> None:  # type: ignore[override]
        return None

    @property
    def stopped_callback(self) -> None:  # type: ignore[override]
        return None


def make_worker(queue_name: str, connection: Any, log: JsonLogger) -> Worker:
    """The notifier's worker on `queue_name`: JSON jobs, WebhookJob only, each failure logged as one JSON line."""
    def _logged(job: Job, exc_type: type, exc: BaseException, _tb: object) -> bool:
        if isinstance(exc, DeserializationError):  # rq decodes a job before asking for its function
            exc = ForeignJobError(f"job {job.id} is not a JSON job (pickle?): never decoded")
        kind = "job_refused" if isinstance(exc, ForeignJobError) else "job_failed"
        log.error(kind, job=job.id, error=f"{type(exc).__name__}: {exc}")
        return True  # rq's own handling (retry / failed registry) goes on
    q = Queue(queue_name, connection=connection, serializer=JSONSerializer, job_class=WebhookJob)
    return Worker([q], connection=connection, serializer=JSONSerializer, job_class=WebhookJob,
                  exception_handlers=[_logged])
