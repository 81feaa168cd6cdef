"""The stack of a chaos run: redis-server (AOF, fsync always), the paper exchange and every service, each a
separate subprocess that can be SIGKILLed and started again with the same command and environment."""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import redis
import requests

from shared.adapters.credentials import private_stack
from shared.adapters.redis_acl import ADMIN

HOME = Path(__file__).resolve().parents[1]
SERVICES = ("signal_ingest", "position_engine", "exit_manager", "watchdog", "notifier")
KILLABLE = ("redis", "paper_exchange") + SERVICES


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChaosStack:
    """Processes of one chaos run, all under `run_dir`."""

    def __init__(self, run_dir: Path, env: dict[str, str], redis_port: int, paper_port: int,
                 services: tuple[str, ...] = SERVICES) -> None:
        self.run_dir, self.env = run_dir, env
        self.redis_port, self.paper_port = redis_port, paper_port
        self.services = services
        self.procs: dict[str, subprocess.Popen] = {}
        self.starts: dict[str, int] = {}
        self.prefix = env["EXEC_PREFIX"]
        # Closed like the product: each process its own user (passwords in EXEC_SECRETS_DIR); the harness is admin
        self.redis_args, pw = private_stack(run_dir, self.prefix)
        self.env["EXEC_SECRETS_DIR"] = str(run_dir / "secrets")
        self.r = redis.Redis(host="127.0.0.1", port=redis_port, socket_timeout=2, socket_connect_timeout=1,
                             username=ADMIN, password=pw[ADMIN])
        self.admin_url = f"http://127.0.0.1:{paper_port}/admin"
        self.http = requests.Session()
        (run_dir / "logs").mkdir(parents=True, exist_ok=True)
        (run_dir / "redis").mkdir(parents=True, exist_ok=True)

    # ---- processes ------------------------------------------------------------------------------
    def _cmd(self, name: str) -> list[str]:
        if name == "redis":
            exe = shutil.which("redis-server") or "redis-server"
            return [exe, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--dir", str(self.run_dir / "redis"),
                    "--appendonly", "yes", "--appendfsync", "always", "--save", "", *self.redis_args]
        return [sys.executable, "-m", f"services.{name}"]

    def start(self, name: str) -> None:
        with open(self.run_dir / "logs" / f"{name}.log", "ab") as log:
            log.write(f"\n==== chaos: start {name} at {time.time():.3f}\n".encode())
            log.flush()
            self.procs[name] = subprocess.Popen(self._cmd(name), cwd=HOME, env=self.env, stdout=log,
                                                stderr=subprocess.STDOUT, start_new_session=True)
        self.starts[name] = self.starts.get(name, 0) + 1

    def kill9(self, name: str) -> None:
        p = self.procs.get(name)
        if p is None:
            return
        with open(self.run_dir / "logs" / f"{name}.log", "ab") as log:
            log.write(f"\n==== chaos: SIGKILL {name} (pid {p.pid}) at {time.time():.3f}\n".encode())
        try:
            os.kill(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(10)

    def alive(self, name: str) -> bool:
        p = self.procs.get(name)
        return p is not None and p.poll() is None

    def up(self, name: str) -> bool:
        """Is `name` running and answering (redis PING, exchange admin, or a fresh heartbeat)?"""
        if not self.alive(name):
            return False
        try:
            if name == "redis":
                return bool(self.r.ping())
            if name == "paper_exchange":
                return self.http.get(self.admin_url + "/state", timeout=1).status_code == 200
            # a heartbeat written by THIS process (the killed one's may still be alive for its TTL)
            raw = self.r.get(f"{self.prefix}hb:{name}")
            return raw is not None and json.loads(raw).get("pid") == self.procs[name].pid
        except (redis.RedisError, requests.RequestException):
            return False

    def wait_up(self, name: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.up(name):
                return True
            if not self.alive(name):
                return False
            time.sleep(0.05)
        return False

    def start_all(self) -> None:
        self.start("redis")
        if not self.wait_up("redis", 15):
            raise RuntimeError("redis did not start; see " + str(self.run_dir / "logs/redis.log"))
        self.start("paper_exchange")
        if not self.wait_up("paper_exchange", 60):
            raise RuntimeError("paper exchange did not start; see " + str(self.run_dir / "logs/paper_exchange.log"))
        for s in self.services:
            self.start(s)
        for s in self.services:
            if not self.wait_up(s, 60):
                raise RuntimeError(f"{s} did not start; see {self.run_dir / 'logs' / (s + '.log')}")

    def stop_all(self) -> None:
        order = [n for n in self.procs if n not in ("redis", "paper_exchange")] + ["paper_exchange", "redis"]
        for name in order:
            p = self.procs.pop(name, None)
            if p is None:
                continue
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(8)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.http.close()
        self.r.close()

    def pids(self) -> dict[str, int]:
        return {n: p.pid for n, p in self.procs.items() if p.poll() is None}

    # ---- the exchange's admin API --------------------------------------------------------------------
    def admin(self, path: str, body: dict | None = None, timeout: float = 10) -> Any:
        if body is None:
            resp = self.http.get(self.admin_url + path, timeout=timeout)
        else:
            resp = self.http.post(self.admin_url + path, json=body, timeout=timeout)
        resp.raise_for_status()
        return resp.json()

    def orders(self) -> list[dict]:
        body = self.admin("/orders", timeout=30)
        return body["orders"] if isinstance(body, dict) else body
