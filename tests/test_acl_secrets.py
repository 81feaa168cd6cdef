"""Secrets where they are used, in the running supervisord stack (scripts/up.sh, as an operator starts it): no
process but the signers can read the Binance secret, signal_ingest's and the notifier's environment hold no
Binance secret and no other process's Redis password, supervisord's own environment holds none, and no log line
holds any of them."""
from __future__ import annotations

import os
import secrets
import stat
import subprocess
from pathlib import Path

import pytest
import redis

from shared.adapters import credentials, redis_acl
from tests.redis_helpers import free_port, wait_until

HOME = Path(__file__).resolve().parents[1]
SERVICES = ("signal_ingest", "position_engine", "exit_manager", "watchdog", "notifier", "user_stream")


def _ctl(env: dict[str, str], *args: str) -> str:
    return subprocess.run([str(HOME / ".venv/bin/supervisorctl"), "-c", str(HOME / "supervisord.conf"), *args],
                          env=env, capture_output=True, text=True, timeout=30).stdout


def _environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(kv.decode(errors="replace").split("=", 1) for kv in raw if b"=" in kv)


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    run = tmp_path_factory.mktemp("sup")
    secret = "live-like-" + secrets.token_hex(16)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EXEC_", "PAPER_", "REDIS_", "BINANCE_"))}
    env.update(EXEC_RUN_DIR=str(run / "run"), EXEC_SECRETS_DIR=str(run / "secrets"), EXEC_REDIS_PORT=str(free_port()),
               PAPER_PORT=str(free_port()), PAPER_WS_PORT=str(free_port()), BINANCE_API_KEY="paper-key",
               BINANCE_API_SECRET=secret, PAPER_API_SECRET=secret, N8N_BASIC_AUTH_PASSWORD="hook-" + secret)
    pw = credentials.init(run / "secrets")
    env["EXEC_HOME"] = str(HOME)
    out = subprocess.run(["bash", str(HOME / "scripts/up.sh")], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    shell = subprocess.run(["bash", "-c", f"source {HOME}/scripts/env.sh; env -0"], env=env, capture_output=True,
                           timeout=30).stdout  # the operator's shell, for supervisorctl
    ctl_env = dict(kv.decode().split("=", 1) for kv in shell.split(b"\0") if b"=" in kv)
    admin = redis.Redis(port=int(env["EXEC_REDIS_PORT"]), username="admin", password=pw["admin"])
    try:
        wait_until(lambda: _alive(admin, SERVICES), 120, 0.2, "every service's heartbeat")
        yield {"env": ctl_env, "secret": secret, "passwords": pw, "run": run / "run"}
    finally:
        _ctl(ctl_env, "shutdown")
        admin.close()


def _alive(admin: redis.Redis, names) -> bool:
    try:
        return all(admin.exists(f"exec:hb:{s}") for s in names)
    except redis.ConnectionError:
        return False


def _pid(stack, name: str) -> int:
    return int(_ctl(stack["env"], "pid", name).strip())


@pytest.mark.parametrize("name", ["signal_ingest", "notifier"])
def test_ingest_and_notifier_environ_holds_no_binance_secret_and_no_other_password(stack, name):
    env = _environ(_pid(stack, name))
    blob = "\n".join(f"{k}={v}" for k, v in env.items())
    assert stack["secret"] not in blob
    assert not {"BINANCE_API_KEY", "BINANCE_API_SECRET", "PAPER_API_SECRET", "N8N_BASIC_AUTH_PASSWORD"} & set(env)
    for user, pw in stack["passwords"].items():
        assert pw not in blob, f"{name} holds the Redis password of {user}"


def test_no_process_environ_and_no_log_holds_a_secret(stack):
    pids = {n: _pid(stack, n) for n in (*SERVICES, "paper_exchange")}
    sup_pid = int((stack["run"] / "supervisor" / "supervisord.pid").read_text())
    for name, pid in {**pids, "supervisord": sup_pid}.items():
        blob = Path(f"/proc/{pid}/environ").read_bytes().decode(errors="replace")
        assert stack["secret"] not in blob, name
        assert not any(pw in blob for pw in stack["passwords"].values()), name
    logs = "".join(p.read_text(errors="replace") for p in (stack["run"] / "logs").glob("*.log"))
    logs += "".join(p.read_text(errors="replace") for p in (stack["run"] / "supervisor").glob("*.log"))
    assert stack["secret"] not in logs
    assert not any(pw in logs for pw in stack["passwords"].values())


def test_the_secrets_file_is_private_and_the_signers_hold_the_key(stack):
    f = stack["run"] / "secrets" / "stack.env"
    assert stat.S_IMODE(f.stat().st_mode) == 0o600 and stack["secret"] in f.read_text()
    for p in (Path(stack["env"]["EXEC_SECRETS_DIR"]) / "redis").iterdir():
        assert stat.S_IMODE(p.stat().st_mode) == 0o600
    # user_stream holds a signed listen token of the paper exchange (its heartbeat says so): it has the key
    admin = redis.Redis(port=int(stack["env"]["EXEC_REDIS_PORT"]), username=redis_acl.ADMIN,
                        password=stack["passwords"][redis_acl.ADMIN])
    assert admin.exists("exec:hb:user_stream") and admin.exists("exec:hb:position_engine")
    admin.close()
