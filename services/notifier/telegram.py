"""Telegram alerts: the same alert payloads as the webhook's, written for a person, delivered by the notifier's
rq worker through the Bot API's sendMessage.

The job carries the payload only. The bot token, the chat id and the API's address come from the worker's own
environment (TELEGRAM_BOT_TOKEN, TELEGRAM_CHAT_ID, TELEGRAM_API_URL for a stand-in): a job is readable by
anyone with Redis access, and the token is a password. No error message carries the token (the API's URLs hold
it): request failures are reported by their class name only.

429 Too Many Requests: the API says how long to wait (`parameters.retry_after`); the job waits that long and
sends again while it fits in the job's time, else it fails and rq's retries (the webhook's policy) take over.
Delivered once: a sent message is recorded under the job's id, so a job run again (the worker died after
sending, before rq recorded the success) does not send it twice. Plain text (no parse_mode): nothing in an
alert can inject markup.
"""
from __future__ import annotations

import os
import time
from datetime import UTC, datetime
from typing import Any

import requests
from rq import get_current_job

TIMEOUT_SEC = 5.0
MAX_TEXT = 4096                  # the Bot API's limit for one message
IN_JOB_WAIT_BUDGET_SEC = 20.0    # below the job's 30 s timeout: longer waits go back to rq's retries
SENT_TTL_SEC = 7 * 24 * 3600
ICON = {"CRITICAL": "🔴", "ERROR": "🟠", "WARN": "🟡", "INFO": "🔵"}


class TelegramError(RuntimeError):
    """Delivery failed; rq retries the job. Never holds the token."""


def format_message(payload: dict[str, Any]) -> str:
    """The alert as a person reads it: what happened, the trade, the figures, when (UTC)."""
    sev = str(payload.get("severity", "INFO"))
    lines = [f"{ICON.get(sev, '•')} {sev}: {payload.get('event', 'alert')}", str(payload.get("message", ""))]
    if payload.get("trade_key"):
        lines.append(f"trade {payload['trade_key']}")
    details = payload.get("details") or {}
    figures = [f"{k} {v}" for k, v in details.items() if v not in (None, "", [], {})]
    if figures:
        lines.append(" · ".join(figures))
    ts = payload.get("ts")
    if isinstance(ts, (int, float)) and ts > 0:
        lines.append(datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC"))
    text = "\n".join(lines)
    return text if len(text) <= MAX_TEXT else text[: MAX_TEXT - 1] + "…"


def _settings() -> tuple[str, str, str]:
    token = os.environ.get("TELEGRAM_BOT_TOKEN", "")
    chat = os.environ.get("TELEGRAM_CHAT_ID", "")
    if not token or not chat:
        missing = [n for n, v in (("TELEGRAM_BOT_TOKEN", token), ("TELEGRAM_CHAT_ID", chat)) if not v]
        raise TelegramError(f"{' and '.join(missing)} not set in the notifier's environment")
    return token, chat, os.environ.get("TELEGRAM_API_URL", "https://api.telegram.org").rstrip("/")


def deliver_telegram(payload: dict[str, Any]) -> int:
    """Send `payload` to the configured chat; returns Telegram's message id. Raises TelegramError (rq retries)."""
    token, chat, api = _settings()
    job = get_current_job()
    sent_key = f"{job.origin}:telegram:sent:{job.id}" if job is not None else ""
    if sent_key and (done := job.connection.get(sent_key)) is not None:
        return int(done)   # already delivered by an earlier run of this job
    body = {"chat_id": chat, "text": format_message(payload), "disable_web_page_preview": True}
    deadline = time.monotonic() + IN_JOB_WAIT_BUDGET_SEC
    while True:
        resp = _post(f"{api}/bot{token}/sendMessage", body)
        if resp.status_code == 429:
            wait = _retry_after(resp)
            if time.monotonic() + wait > deadline:
                raise TelegramError(f"Telegram answered 429: retry after {wait:g} s (left to rq's retries)")
            time.sleep(wait)  # the API's own instruction; nothing was sent
            continue
        if resp.status_code != 200:
            raise TelegramError(f"Telegram answered HTTP {resp.status_code}: {_description(resp)}")
        message_id = int(resp.json().get("result", {}).get("message_id", 0))
        if sent_key:
            job.connection.set(sent_key, message_id, ex=SENT_TTL_SEC)
        return message_id


def _post(url: str, body: dict[str, Any]) -> requests.Response:
    try:
        return requests.post(url, json=body, timeout=TIMEOUT_SEC, headers={"User-Agent": "executor-notifier/1"})
    except requests.RequestException as e:
        raise TelegramError(f"Telegram unreachable: {e.__class__.__name__}") from None


def _retry_after(resp: requests.Response) -> float:
    try:
        v = float(resp.json().get("parameters", {}).get("retry_after", 1))
    except (ValueError, AttributeError):
        v = float(resp.headers.get("Retry-After", "1") or 1)
    return min(max(v, 0.0), 3600.0)


def _description(resp: requests.Response) -> str:
    try:
        return str(resp.json().get("description", ""))[:200]
    except ValueError:
        return ""
