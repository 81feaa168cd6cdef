"""Telegram alerts through the real notifier worker, against a local stand-in of the Bot API (sendMessage):
the text written for a person, 429 with parameters.retry_after waited out, nothing sent twice, no token in jobs
or logs."""
from __future__ import annotations

import http.server
import json
import threading
import time
from typing import Any

from rq import Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from services.notifier.telegram import format_message
from shared.adapters.notify import enqueue_webhook, make_payload, queue
from shared.config import load_config
from tests.wd_helpers import WebhookReceiver, service_env, start_service

TOKEN = "123456:telegram-secret-token"
CHAT = "-100777"
PREFIX = "t:"


class BotApi:
    """The Bot API's sendMessage on loopback: answers the queued statuses first (429 with retry_after), then 200."""

    def __init__(self, first: list[int] | None = None, retry_after: int = 1) -> None:
        self.plan = list(first or [])
        self.retry_after = retry_after
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with owner.lock:
                    owner.calls.append({"path": self.path, "body": body, "at": time.monotonic()})
                    status = owner.plan.pop(0) if owner.plan else 200
                    n = len(owner.calls)
                reply = ({"ok": True, "result": {"message_id": n, "chat": {"id": body["chat_id"]}, "text": body["text"]}}
                         if status == 200 else {"ok": False, "error_code": status, "description":
                                                f"Too Many Requests: retry after {owner.retry_after}",
                                                "parameters": {"retry_after": owner.retry_after}})
                data = json.dumps(reply).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *_a: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def payload(msg: str = "filled position has 1 leg(s) (trail) with no open stop order") -> dict:
    return make_payload("watchdog.I1", "CRITICAL", msg, 1736798412.5, "250113-2000-L-abc123",
                        {"check": "I1", "unprotected_qty": "0.00029"})


def run_worker(redis_url: str, tmp_path, api: BotApi, **extra: str) -> str:
    # the webhook's URL and the bot's token are the worker's own settings, never the job's
    env = service_env(redis_url, "notifier", PREFIX, TELEGRAM_BOT_TOKEN=TOKEN, TELEGRAM_CHAT_ID=CHAT,
                      TELEGRAM_API_URL=api.url, **extra)
    log = tmp_path / "notifier.log"
    proc = start_service("services.notifier", env, "--burst", log_path=log)
    assert proc.wait(timeout=60) == 0, log.read_text()
    text = log.read_text()
    assert TOKEN not in text, "the bot token reached the worker's log"
    return text


def test_message_is_written_for_a_person():
    text = format_message(payload())
    assert text.splitlines() == [
        "🔴 CRITICAL: watchdog.I1",
        "filled position has 1 leg(s) (trail) with no open stop order",
        "trade 250113-2000-L-abc123",
        "check I1 · unprotected_qty 0.00029",
        "2025-01-13 20:00:12 UTC",
    ]


def test_429_waits_retry_after_then_sends_once(r, redis_url, tmp_path):
    api = BotApi(first=[429], retry_after=1)
    try:
        cfg = load_config({"EXEC_PREFIX": PREFIX, "TELEGRAM_CHAT_ID": CHAT})
        assert enqueue_webhook(r, cfg, payload()) is None  # no webhook URL: Telegram alone
        jobs = queue(r, PREFIX).jobs
        assert [j.func_name for j in jobs] == ["services.notifier.telegram.deliver_telegram"]
        assert TOKEN.encode() not in json.dumps(jobs[0].args).encode()
        run_worker(redis_url, tmp_path, api)
        assert len(api.calls) == 2, api.calls
        first, second = api.calls
        assert second["at"] - first["at"] >= 1.0, "sent again before retry_after"
        assert second["path"] == f"/bot{TOKEN}/sendMessage"
        assert second["body"] == {"chat_id": CHAT, "text": format_message(payload()), "disable_web_page_preview": True}
        job = Job.fetch(jobs[0].id, connection=r, serializer=JSONSerializer)
        assert job.get_status() == "finished" and job.return_value() == 2
        # The same job run again (a worker that died after sending) does not send it twice.
        queue(r, PREFIX).enqueue_job(job)
        run_worker(redis_url, tmp_path, api)
        assert len(api.calls) == 2, "sent twice"
    finally:
        api.close()


def test_failing_webhook_does_not_resend_telegram(r, redis_url, tmp_path):
    api = BotApi()
    try:
        with WebhookReceiver(500) as hook:
            cfg = load_config({"EXEC_PREFIX": PREFIX, "TELEGRAM_CHAT_ID": CHAT, "N8N_WEBHOOK_URL": hook.url})
            enqueue_webhook(r, cfg, payload("once"), retry=Retry(max=2, interval=0))
            run_worker(redis_url, tmp_path, api, N8N_WEBHOOK_URL=hook.url)
            assert len(hook.requests) == 3  # the webhook: first try + 2 retries
        assert len(api.calls) == 1 and api.calls[0]["body"]["text"].splitlines()[1] == "once"
    finally:
        api.close()
