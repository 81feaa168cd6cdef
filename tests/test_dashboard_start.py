"""The dashboard's start-up: no token, no start (naming the variable), unless it is the local paper stack."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HOME = Path(__file__).resolve().parents[1]


def _start(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(HOME), "REDIS_URL": "redis://127.0.0.1:1/0"}
    return subprocess.run([sys.executable, "-m", "services.dashboard"], cwd=HOME, env={**base, **env},
                          capture_output=True, text=True, timeout=60)


def test_no_token_refused_off_the_paper_stack():
    res = _start({"BINANCE_BASE_URL": "https://api.binance.com"})
    assert res.returncode == 2
    assert "DASHBOARD_TOKEN is not set" in res.stderr


def test_no_token_refused_when_served_beyond_loopback():
    res = _start({"BINANCE_BASE_URL": "http://127.0.0.1:8899", "DASHBOARD_BIND": "0.0.0.0"})
    assert res.returncode == 2 and "DASHBOARD_TOKEN" in res.stderr


def test_short_token_refused_and_secret_not_echoed():
    res = _start({"BINANCE_BASE_URL": "https://api.binance.com", "DASHBOARD_TOKEN": "short-tok"})
    assert res.returncode == 2
    assert "at least 16 characters" in res.stderr and "short-tok" not in res.stderr + res.stdout
