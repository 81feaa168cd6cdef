"""supervisord.conf and docker-compose.yml describe the same stack (these tests read the files; `make compose-check`
runs the compose stack on a Docker engine)."""
from __future__ import annotations

import configparser
import os
import subprocess
from pathlib import Path

import redis
import yaml

from shared.adapters.credentials import redis_url_for, supervisord_launch
from shared.adapters.redis_acl import ADMIN
from tests.redis_helpers import free_port, wait_until

HOME = Path(__file__).resolve().parents[1]
PROGRAMS = {"redis", "paper_exchange", "signal_ingest", "position_engine", "exit_manager", "watchdog", "notifier",
            "user_stream", "metrics", "dashboard"}


def _supervisor_programs() -> dict[str, str]:
    cp = configparser.RawConfigParser()
    cp.read(HOME / "supervisord.conf")
    return {s.split(":", 1)[1]: cp.get(s, "command") for s in cp.sections() if s.startswith("program:")}


def _compose() -> dict:
    return yaml.safe_load((HOME / "docker-compose.yml").read_text())


def test_same_services_in_both():
    assert set(_supervisor_programs()) == PROGRAMS
    assert set(_compose()["services"]) == PROGRAMS


def test_same_commands_in_both():
    sup = _supervisor_programs()
    compose = _compose()["services"]
    for name in PROGRAMS - {"redis"}:
        module = f"-m services.{name}"
        assert sup[name].endswith(module), sup[name]
        assert compose[name]["command"] == f"python {module}"
    assert "--appendonly yes" in sup["redis"] and "--appendonly yes" in compose["redis"]["command"]


def test_compose_has_volumes_healthchecks_and_restart_policies():
    c = _compose()
    for name, svc in c["services"].items():
        assert svc.get("restart") == "unless-stopped", name
        assert "healthcheck" in svc, name
        assert svc.get("volumes"), name
    assert "executor-data" in c["volumes"] and "redis-data" in c["volumes"]
    for name in PROGRAMS - {"redis", "paper_exchange"}:
        assert c["services"][name]["environment"]["EXEC_PROCESS"] == name


def _stack_env(run_dir: Path) -> dict[str, str]:
    base = {**os.environ, "EXEC_RUN_DIR": str(run_dir), "EXEC_REDIS_PORT": str(free_port()),
            "PAPER_PORT": str(free_port()), "PAPER_SPEED": "0", "METRICS_PORT": str(free_port()),
            "DASHBOARD_PORT": str(free_port())}
    out = subprocess.run(["bash", "-c", f"source {HOME}/scripts/env.sh && env -0"], env=base, capture_output=True,
                         check=True, timeout=30).stdout
    return dict(item.split("=", 1) for item in out.decode().split("\0") if "=" in item)


def _pids(ctl: list[str], env: dict[str, str]) -> dict[str, tuple[str, int]]:
    out = subprocess.run([*ctl, "status"], env=env, capture_output=True, text=True, timeout=30).stdout
    rows = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 2:
            pid = int(parts[3].rstrip(",")) if len(parts) > 3 and parts[2] == "pid" else -1
            rows[parts[0]] = (parts[1], pid)
    return rows


def test_supervisorctl_restarts_one_service_while_the_others_go_on(tmp_path: Path):
    env = _stack_env(tmp_path)
    ctl = [str(HOME / ".venv/bin/supervisorctl"), "-c", str(HOME / "supervisord.conf")]
    argv, sup_env = supervisord_launch(env)  # as scripts/up.sh: the aclfile, no secret in supervisord's env
    subprocess.run(argv, env=sup_env, check=True, timeout=30)
    try:
        before = wait_until(lambda: (lambda p: p if set(p) == PROGRAMS and all(s == "RUNNING" for s, _ in p.values())
                                     else None)(_pids(ctl, env)), 40, 0.2, "all programs RUNNING")
        r = redis.Redis.from_url(redis_url_for(ADMIN, env))
        wait_until(lambda: r.exists("exec:hb:position_engine"), 30, 0.1, "engine heartbeat")
        res = subprocess.run([*ctl, "restart", "position_engine"], env=env, capture_output=True, text=True, timeout=60)
        assert "position_engine: started" in res.stdout
        after = _pids(ctl, env)
        assert after["position_engine"][0] == "RUNNING" and after["position_engine"][1] != before["position_engine"][1]
        for name in PROGRAMS - {"position_engine"}:
            assert after[name] == before[name], f"{name} was disturbed by the restart"
        r.delete("exec:hb:position_engine")
        wait_until(lambda: r.exists("exec:hb:position_engine"), 30, 0.1, "restarted engine's heartbeat")
        assert r.config_get("appendonly")["appendonly"] == "yes"
        r.close()
    finally:
        subprocess.run([*ctl, "shutdown"], env=env, capture_output=True, timeout=60)


def _last_workdir() -> str:
    lines = [ln.split(None, 1)[1].strip() for ln in (HOME / "Dockerfile").read_text().splitlines()
             if ln.upper().startswith("WORKDIR ")]
    return lines[-1]


def test_compose_services_write_only_under_the_data_volume():
    """Paths given to the containers are in /data, and so is their working directory: the paper exchange's relative
    defaults (its synthetic market in var/market) land in the volume, never under the root-owned /app."""
    c = _compose()
    assert _last_workdir() == "/data"
    for name in PROGRAMS - {"redis"}:
        env = c["services"][name]["environment"]
        paths = {k: v for k, v in env.items() if k.endswith(("_LOG", "_CSV", "_FN")) and v}
        assert paths, name
        for key, value in paths.items():
            if key != "PAPER_MARKET_CSV":  # read only, from the mounted market folder
                assert str(value).startswith("/data/"), (name, key, value)
        assert "executor-data:/data" in c["services"][name]["volumes"], name
    # the paper exchange looks for real market data in ../shared/data/market, i.e. /shared/data/market from /data
    market = [v for v in c["services"]["paper_exchange"]["volumes"] if ":/shared/data/market" in v]
    assert market and market[0].endswith(":ro"), market
