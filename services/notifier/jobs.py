"""The rq job that delivers one webhook. Runs in the notifier worker, never in a trading process."""
from __future__ import annotations

import os
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


def _password() -> str:
    # Read from the worker's own environment (never from the job, which anyone with Redis access can read).
    return os.environ.get("N8N_BASIC_AUTH_PASSWORD", "")


def deliver_webhook(payload: dict, url: str, auth_user: str = "") -> int:
    """POST `payload` as JSON to `url` (basic auth when `auth_user` is set), timeout 5 s. Returns the HTTP
    status; raises WebhookError on a connection problem or a non-2xx answer so that rq retries."""
    auth = (auth_user, _password()) if auth_user else None
    try:
        resp = requests.post(url, json=payload, auth=auth, timeout=TIMEOUT_SEC,
                             headers={"User-Agent": "executor-notifier/1"})
    except requests.RequestException as e:
        raise WebhookError(f"webhook to {redact_url(url)} failed: {e.__class__.__name__}") from None
    if not 200 <= resp.status_code < 300:
        raise WebhookError(f"webhook to {redact_url(url)} answered HTTP {resp.status_code}")
    return resp.status_code
