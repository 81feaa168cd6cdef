"""Test helpers for the watchdog/notifier tests: a real redis-server on a free port, a real HTTP webhook
receiver on loopback, a dict-backed exchange provider (the outside exchange), and polling with a deadline."""
from __future__ import annotations

import http.server
import json
import os
import subprocess
import sys
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any


from shared.domain.invariants import OpenOrder
from tests.redis_helpers import free_port, redis_server, user_url, wait_until  # noqa: F401 - re-exported

REPO = Path(__file__).resolve().parent.parent


# One implementation of these for every test module.
wait_for = wait_until


class _Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        srv: WebhookReceiver = self.server.owner  # type: ignore[attr-defined]
        with srv.lock:
            srv.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
            status = srv.status
        self.send_response(status)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"ok")

    def log_message(self, *args: Any) -> None:
        pass


class WebhookReceiver:
    """A real HTTP server on loopback answering every POST with `status`, recording the requests."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.owner = self  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/webhook/secret-token"
        self._t = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "WebhookReceiver":
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def json_bodies(self) -> list[dict]:
        with self.lock:
            return [json.loads(r["body"]) for r in self.requests]


class DictExchange:
    """The outside exchange, as a dict: a SnapshotProvider for the watchdog in tests."""

    def __init__(self, orders: list[OpenOrder] | None = None, debts: dict[str, Decimal] | None = None) -> None:
        self.orders = orders or []
        self.debts = debts or {}
        self.fail: Exception | None = None
        self.calls = {"open_orders": 0, "margin_debts": 0}

    def open_orders(self) -> list[OpenOrder]:
        self.calls["open_orders"] += 1
        if self.fail:
            raise self.fail
        return list(self.orders)

    def margin_debts(self) -> dict[str, Decimal]:
        self.calls["margin_debts"] += 1
        if self.fail:
            raise self.fail
        return dict(self.debts)


def service_env(redis_url: str, user: str, prefix: str = "t:", **extra: Any) -> dict[str, str]:
    """Environment for a service subprocess: this repo on PYTHONPATH, a test prefix, Redis as the product's
    `user` (its ACL rules for `prefix`), and `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("N8N_", "INVAR_", "I13_", "WATCHDOG_"))}
    env.update({"PYTHONPATH": str(REPO), "REDIS_URL": user_url(redis_url, user, prefix), "EXEC_PREFIX": prefix,
                "PYTHONUNBUFFERED": "1"})
    env.update({k: str(v) for k, v in extra.items()})
    return env


def start_service(module: str, env: dict[str, str], *args: str, log_path: Path | None = None) -> subprocess.Popen:
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    return subprocess.Popen([sys.executable, "-m", module, *args], env=env, cwd=str(REPO),
                            stdout=out, stderr=subprocess.STDOUT if log_path else subprocess.DEVNULL)


def stop_service(proc: subprocess.Popen, timeout: float = 10.0) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
