"""`executorctl sweep` on rq workers, as a user runs it: the combinations enqueued on a Redis, workers as separate
commands each with its own directory (as if on other hosts: only the Redis URL is shared), the results gathered.
Two workers give what one gives; a second run resumes (nothing is run again); a worker killed mid-job loses no
combination (its job is run once more and the table says so)."""
from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis

from shared.adapters.market_files import write_bars
from tests.stack import HOME
from shared.domain.synthetic_signals import peak_lines

CTL = [sys.executable, "-m", "services.executorctl"]


@pytest.fixture()
def inputs(tmp_path: Path, market_bars):
    """Four hours with a few signals after 240 bars of history."""
    lo = len(market_bars) // 4
    bars = market_bars[lo:lo + 240 + 4 * 60]
    agg, sig = tmp_path / "slice.aggregated.csv", tmp_path / "signals.jsonl"
    write_bars(agg, bars)
    sig.write_text("\n".join(peak_lines(bars, 240, 30)) + "\n")
    return agg, sig, bars[240].ts


def _sweep(url: str, agg: Path, sig: Path, start: int, out: Path, *grid: str, wait: bool = True,
           timeout: float = 900) -> subprocess.CompletedProcess:
    args = [*CTL, "sweep", "--redis", url, "--agg", str(agg), "--signals", str(sig), "--start", str(start),
            "--out", str(out), "--json", *grid]
    return subprocess.run(args + ([] if wait else ["--no-wait"]), cwd=HOME, capture_output=True, text=True,
                          timeout=timeout, check=False)


def _worker(url: str, d: Path, burst: bool) -> subprocess.Popen:
    d.mkdir(parents=True, exist_ok=True)
    log = open(d / "worker.log", "wb")  # noqa: SIM115 - closed with the process
    return subprocess.Popen([*CTL, "sweep-worker", "--redis", url, "--dir", str(d), *(["--burst"] if burst else [])],
                            cwd=d, stdout=log, stderr=subprocess.STDOUT)


def _figures(doc: dict) -> list[tuple]:
    return sorted((r["id"], r["trades"], r["net_r"], r["win_rate"], r["max_drawdown"], r["fees"]) for r in doc["rows"])


GRID = ("--grid", "SL_PCT=0.002,0.004", "--grid", "TP_R_LIST=1,2:1.5,3")


def test_two_workers_give_what_one_gives_and_a_rerun_resumes(tmp_path: Path, redis_url, inputs):
    agg, sig, start = inputs
    docs = {}
    for n, db in ((1, 1), (2, 2)):
        url = redis_url.rsplit("/", 1)[0] + f"/{db}"
        redis.Redis.from_url(url).flushdb()
        res = _sweep(url, agg, sig, start, tmp_path / f"out{n}", *GRID, wait=False)
        assert res.returncode == 0, res.stderr
        workers = [_worker(url, tmp_path / f"w{n}-{i}", burst=True) for i in range(n)]
        for w in workers:
            assert w.wait(900) == 0
        res = _sweep(url, agg, sig, start, tmp_path / f"out{n}", *GRID)
        assert res.returncode == 0, res.stdout + res.stderr
        docs[n] = json.loads(res.stdout)
    one, two = docs[1], docs[2]
    assert len(one["rows"]) == 4 and all(r["status"] == "done" for r in one["rows"]), one
    assert _figures(one) == _figures(two)
    assert any(int(r["trades"]) > 0 for r in one["rows"])
    assert len({r["worker"] for r in two["rows"]}) == 2, two["rows"]   # both workers ran combinations
    with open(two["csv"], encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert {r["id"] for r in rows} == {r["id"] for r in two["rows"]} and "SL_PCT" in rows[0] and "net_r" in rows[0]
    assert Path(two["heatmap"]).read_bytes().startswith(b"\x89PNG")
    # the same command again: the same sweep, every combination already done, nothing enqueued
    url = redis_url.rsplit("/", 1)[0] + "/2"
    before = redis.Redis.from_url(url).hgetall(f"executor:sweep:{two['sweep']}:attempts")
    res = _sweep(url, agg, sig, start, tmp_path / "out2", *GRID)
    assert res.returncode == 0 and json.loads(res.stdout)["sweep"] == two["sweep"]
    assert redis.Redis.from_url(url).hgetall(f"executor:sweep:{two['sweep']}:attempts") == before


def test_a_worker_killed_mid_job_loses_no_combination(tmp_path: Path, redis_url, inputs):
    agg, sig, start = inputs
    url = redis_url.rsplit("/", 1)[0] + "/3"
    r = redis.Redis.from_url(url)
    r.flushdb()
    grid = ("--grid", "SL_PCT=0.002,0.004")
    res = _sweep(url, agg, sig, start, tmp_path / "out", *grid, wait=False)
    assert res.returncode == 0, res.stderr
    first = _worker(url, tmp_path / "wa", burst=False)
    deadline = time.monotonic() + 120
    while not r.keys("executor:sweep:*:hb:*"):   # a replay is running on the first worker
        assert time.monotonic() < deadline and first.poll() is None, (tmp_path / "wa" / "worker.log").read_text()
        time.sleep(0.2)  # polling a condition with a deadline
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    second = _worker(url, tmp_path / "wb", burst=False)
    try:
        res = _sweep(url, agg, sig, start, tmp_path / "out", *grid)
    finally:
        second.send_signal(signal.SIGTERM)
        second.wait(60)
    assert res.returncode == 0, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert [r["status"] for r in doc["rows"]] == ["done", "done"], doc
    assert doc["retried"] and all("stopped beating" in why for why in doc["retried"].values()), doc["retried"]
    assert any(int(r["attempt"]) == 2 for r in doc["rows"]), doc["rows"]
    # the killed worker's replay and its private stack stopped with it (they die with their parent)
    deadline = time.monotonic() + 30
    while _running_under(tmp_path / "wa"):
        assert time.monotonic() < deadline, _running_under(tmp_path / "wa")
        time.sleep(0.2)  # polling a condition with a deadline


def _running_under(d: Path) -> list[str]:
    """Processes whose command line or environment names a path under `d` (a replay, its stack)."""
    out = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            blob = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        except OSError:
            continue
        if str(d).encode() in blob:
            out.append(f"{proc.name}: {(proc / 'cmdline').read_bytes()[:120]!r}")
    return out
