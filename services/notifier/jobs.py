"""The rq job that delivers one webhook. Runs in the notifier worker, never in a trading process."""
from __future__ import annotations

from urllib.parse import urlsplit

import requests

TIMEOUT_SEC = 5.0


class WebhookError(RuntimeError):
    """Delivery failed; rq retries the job. The message names the host only (a URL path may hold a token)."""


def redact_url(url: str) -> str:
    """scheme://host[:port]/… — enough to know where, without path, query or credentials."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or "?"
        port = f":{parts.port}" if parts.port else ""
        return f"{parts.scheme}://{host}{port}/…"
    except ValueError:
        return "<unparseable url>"


class Target:
    """Where webhooks go: the worker's own settings (configure()), never the job's."""
    url = ""
    user = ""
    password = ""


def configure(url: str, user: str, password: str) -> None:
    """Set the webhook target from the worker's settings (before rq forks its work horses)."""
    Target.url, Target.user, Target.password = url, user, password


def deliver_webhook(payload: dict) -> int:
    """POST `payload` as JSON to the configured URL (basic auth when a user is set), timeout 5 s. Returns the
    HTTP status (0 when no URL is configured: nothing to do); raises WebhookError on a connection problem or a
    non-2xx answer so that rq retries."""
    if not Target.url:
        return 0
    auth = (Target.user, Target.password) if Target.user else None
    try:
        resp = requests.post(Target.url, json=payload, auth=auth, timeout=TIMEOUT_SEC,
                             headers={"User-Agent": "executor-notifier/1"})
    except requests.RequestException as e:
        raise WebhookError(f"webhook to {redact_url(Target.url)} failed: {e.__class__.__name__}") from None
    if not 200 <= resp.status_code < 300:
        raise WebhookError(f"webhook to {redact_url(Target.url)} answered HTTP {resp.status_code}")
    return resp.status_code
