"""EXEC_LOG capped at LOG_MAX_LINES (issue 22 section 5): the watchdog process, the one writer, follows the real
`events` stream into a readable JSON-lines file holding the newest lines; a restart continues without
duplicates."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import redis

from shared.adapters.redis_streams import publish
from shared.domain.messages import Event
from tests.redis_helpers import wait_until

HOME = Path(__file__).resolve().parents[1]


def _start(env: dict[str, str], log: Path) -> subprocess.Popen:
    fh = open(log, "ab")
    p = subprocess.Popen([sys.executable, "-m", "services.watchdog"], cwd=HOME, env=env, stdout=fh,
                         stderr=subprocess.STDOUT)
    fh.close()
    return p


def _publish(r: redis.Redis, prefix: str, n: int, start: int) -> list[str]:
    return [publish(r, f"{prefix}events", Event(service="position_engine", kind="signal_ignored", at=time.time(),
                                                 trade_key=f"t{i}", data={"reason": "halted", "n": i}), 1000)
            for i in range(start, start + n)]


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()] if path.exists() else []


def test_exec_log_keeps_the_newest_lines_and_a_restart_writes_nothing_twice(tmp_path, redis_url):
    r = redis.Redis.from_url(redis_url)
    prefix = f"xl{os.getpid()}:"
    path = tmp_path / "logs" / "executor.log"
    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("EXEC_", "PAPER_"))},
           "PYTHONPATH": str(HOME), "REDIS_URL": redis_url, "EXEC_PREFIX": prefix, "EXEC_LOG": str(path),
           "LOG_MAX_LINES": "5", "INVAR_ENABLED": "false", "WATCHDOG_PROCESSES": "position_engine",
           "STATE_FN": str(tmp_path / "state.json")}
    wd = _start(env, tmp_path / "watchdog.out")
    try:
        ids = _publish(r, prefix, 12, 0)
        last = ids[-1].decode() if isinstance(ids[-1], bytes) else str(ids[-1])
        wait_until(lambda: _lines(path) and _lines(path)[-1]["id"] == last, 20, 0.05, "EXEC_LOG caught up")
        got = _lines(path)
        assert [x["n"] for x in got] == [7, 8, 9, 10, 11], "the newest LOG_MAX_LINES lines, in order"
        assert got[-1]["action"] == "signal_ignored" and got[-1]["source"] == "position_engine"
        assert got[-1]["trade_key"] == "t11" and got[-1]["ts"].endswith("+00:00")
        wd.terminate()
        wd.wait(10)
        _publish(r, prefix, 3, 12)
        wd = _start(env, tmp_path / "watchdog.out")
        wait_until(lambda: _lines(path)[-1]["n"] == 14, 20, 0.05, "the restarted writer caught up")
        assert [x["n"] for x in _lines(path)] == [10, 11, 12, 13, 14], "nothing twice, nothing skipped"
    finally:
        wd.terminate()
        wd.wait(10)
        r.close()
