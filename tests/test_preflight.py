"""`executorctl preflight` and LIVE_VALIDATE_ONLY (issue 22 section 1), run as commands against a real Redis and
the real paper exchange over HTTP, which `PAPER_*` settings turn into an account that fails each check."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
import redis

from shared.adapters.heartbeat import beat
from shared.domain.bars import AGG_HEADER_LINE
from tests.pe_helpers import KEY, SECRET, Paper, paper_env
from tests.redis_helpers import free_port

HOME = Path(__file__).resolve().parents[1]
PROCESSES = ("signal_ingest", "position_engine", "exit_manager", "watchdog")


def _row(ts: float, price: str = "100000") -> str:
    t = datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return f"{t},10,1.0,0.1,0.5,0.5,{price},{price},{price},{price}"


@pytest.fixture()
def world(tmp_path: Path, redis_url):
    """Redis with AOF on, a fresh feed, a readable DeltaScout log, every heartbeat; `run(...)` makes the paper
    exchange with `paper` settings and runs a command with the executor's settings (`env`)."""
    r = redis.Redis.from_url(redis_url)
    r.flushdb()
    r.config_set("appendonly", "yes")
    prefix = f"pf{os.getpid()}{int(time.time() * 1000) % 100000}:"
    agg, log = tmp_path / "aggregated.csv", tmp_path / "deltascout.log"
    agg.write_text(AGG_HEADER_LINE + "\n" + _row(time.time() - 30) + "\n")
    log.touch()
    for p in PROCESSES:
        beat(r, prefix, p, 60)
    papers: list[Paper] = []

    def run(paper: dict[str, str] | None = None, *args: str, cmd: str = "ctl", **env: str):
        pe = Paper(paper_env(tmp_path / f"paper{len(papers)}", **(paper or {})))
        papers.append(pe)
        full = {k: v for k, v in os.environ.items() if not k.startswith(("PAPER_", "EXEC_", "BINANCE_"))}
        full.update({"PYTHONPATH": str(HOME), "REDIS_URL": redis_url, "EXEC_PREFIX": prefix, "CLOCK": "wall",
                     "BINANCE_BASE_URL": pe.url, "BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET,
                     "AGG_CSV": str(agg), "DELTASCOUT_LOG": str(log), "STATE_FN": str(tmp_path / "state.json"),
                     "WATCHDOG_PROCESSES": "signal_ingest,position_engine,exit_manager", **env})
        argv = ["-m", "services.executorctl", "preflight", "--json", *args] if cmd == "ctl" else \
            ["-m", "services.position_engine"]
        res = subprocess.run([sys.executable, *argv], cwd=HOME, env=full, capture_output=True, text=True, timeout=120)
        return res, pe

    yield run, r, prefix, agg, log
    for pe in papers:
        pe.stop()
    r.config_set("appendonly", "no")
    r.close()


def verdicts(res: subprocess.CompletedProcess) -> dict[str, dict]:
    doc = json.loads(res.stdout)
    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["ready"] == (res.returncode == 0) == all(c["verdict"] != "FAIL" for c in checks.values()), res.stdout
    return checks


def fails(res: subprocess.CompletedProcess) -> set[str]:
    return {n for n, c in verdicts(res).items() if c["verdict"] == "FAIL"}


def test_a_ready_paper_account_passes_every_check(world):
    run, *_ = world
    res, _pe = run()
    assert res.returncode == 0, res.stdout + res.stderr
    checks = verdicts(res)
    for name in ("exchange", "clock", "key.signature", "key.withdrawals", "key.trading", "key.ip",
                 "account.can_trade", "account.commission", "account.fees", "balance", "symbol.status",
                 "symbol.filters", "symbol.order_types", "foreign.orders", "foreign.position", "stack.heartbeats",
                 "stack.redis", "stack.feed", "stack.signals", "plan", "loss_limits"):
        assert name in checks, f"check {name} missing"
        assert checks[name]["verdict"] in ("OK", "WARN"), checks[name]
    plan = checks["plan"]["detail"]
    assert "R = " in plan and "round-trip fees" in plan and "dust left" in plan
    # QTY_USD=100 at SL_PCT=0.2 %: the 0.1 % commission each way is one whole R, as much as TP1 earns
    assert checks["plan"]["verdict"] == "WARN" and "SKIP_TP1_BELOW_FEES" in checks["plan"]["fix"]


def test_the_account_key_symbol_and_stack_failures_each_fail_their_check(world):
    run, r, _prefix, agg, log = world
    r.config_set("appendonly", "no")
    r.config_set("save", "")
    agg.unlink()
    log.unlink()
    paper = {"PAPER_API_RESTRICTIONS": json.dumps({"enableWithdrawals": True, "enableSpotAndMarginTrading": False,
                                                   "ipRestrict": False}),
             "PAPER_CAN_TRADE": "false", "PAPER_SYMBOL_STATUS": "BREAK", "PAPER_OCO_ALLOWED": "false",
             "PAPER_BALANCES": "USDC=50,BTC=0"}
    res, _pe = run(paper, WATCHDOG_PROCESSES="signal_ingest,position_engine,exit_manager,notifier",
                   TICK_SIZE="0.1")
    assert res.returncode == 1
    checks = verdicts(res)
    assert fails(res) >= {"key.withdrawals", "key.trading", "account.can_trade", "symbol.status", "symbol.filters",
                          "symbol.order_types", "balance", "stack.heartbeats", "stack.redis", "stack.feed",
                          "stack.signals"}, res.stdout
    assert checks["key.ip"]["verdict"] == "WARN"
    assert "notifier" in checks["stack.heartbeats"]["detail"] and "OCO" in checks["symbol.order_types"]["detail"]
    assert all(checks[n]["fix"] for n in fails(res)), "every FAIL says how to fix it"


def test_margin_key_symbol_and_capacity_failures(world):
    run, *_ = world
    paper = {"PAPER_API_RESTRICTIONS": json.dumps({"enableMargin": False}), "PAPER_MARGIN_ALLOWED": "false",
             "PAPER_BALANCES": "USDC=20,BTC=0"}
    res, _pe = run(paper, TRADE_MODE="margin", MARGIN_BORROW_MODE="auto")
    checks = verdicts(res)
    assert fails(res) >= {"key.trading", "symbol.margin", "margin.long", "margin.short"}, res.stdout
    assert checks["margin.weight"]["verdict"] == "WARN" and "1500" in checks["margin.weight"]["detail"]


@pytest.mark.parametrize("paper, env, failed", [
    ({}, {"BINANCE_API_SECRET": "not-the-secret"}, "key.signature"),
    ({"PAPER_TIME_OFFSET_MS": "60000"}, {}, "clock"),
    ({}, {"QTY_USD": "0.5"}, "plan"),
])
def test_signature_clock_and_plan_failures(world, paper, env, failed):
    run, *_ = world
    res, _pe = run(paper, **env)
    assert failed in fails(res), res.stdout


def test_an_unreachable_exchange_fails_and_the_stack_is_still_checked(world):
    run, *_ = world
    res, _pe = run({}, BINANCE_BASE_URL=f"http://127.0.0.1:{free_port()}")
    checks = verdicts(res)
    assert checks["exchange"]["verdict"] == "FAIL" and checks["stack.redis"]["verdict"] == "OK"


def test_foreign_orders_and_a_stale_or_wrong_feed_fail(world):
    run, _r, _prefix, agg, _log = world
    agg.write_text(AGG_HEADER_LINE + "\n" + _row(time.time() - 3600) + "\n")
    res, pe = run()
    assert "stack.feed" in fails(res) and "stale" in verdicts(res)["stack.feed"]["detail"]
    # an operator's manual order on SYMBOL: a flatten would not know it
    c = pe.client()
    c.place_order("BTCUSDC", "BUY", "LIMIT", Decimal("0.001"), price=(pe.last() * Decimal("0.9")).quantize(Decimal("0.01")), time_in_force="GTC",
                  client_order_id="manual-by-hand")
    agg.write_text("Time,Price\n" + _row(time.time()) + "\n")
    res2 = _rerun(run, pe)
    assert {"foreign.orders", "stack.feed"} <= fails(res2)
    assert "manual-by-hand" in verdicts(res2)["foreign.orders"]["detail"]
    assert "header" in verdicts(res2)["stack.feed"]["detail"]


def _rerun(run, pe: Paper) -> subprocess.CompletedProcess:
    res, _ = run({}, BINANCE_BASE_URL=pe.url)
    return res


def test_live_validate_only_runs_the_preflight_and_exits_with_its_verdict(world):
    run, r, prefix, *_ = world
    for p in PROCESSES:
        r.delete(f"{prefix}hb:{p}")   # validate-only runs before the stack: heartbeats are not required
    cadences = {"POLL_SEC": "5", "MANAGE_EVERY_SEC": "15", "LIVE_STATUS_POLL_EVERY": "10", "SNAPSHOT_MIN_SEC": "5",
                "RECON_THROTTLE_SEC": "600", "ORPHAN_CANCEL_EVERY_SEC": "30", "INVAR_PERSIST": "1"}
    res, _pe = run(cmd="engine", LIVE_VALIDATE_ONLY="1", **cadences)
    assert res.returncode == 0, res.stdout + res.stderr
    said = [json.loads(x) for x in (res.stdout + res.stderr).splitlines()
            if x.startswith("{") and "original_settings_replaced" in x]
    assert len(said) == 1 and set(said[0]["settings"]) == set(cadences), "one start-up line naming each cadence"
    assert "READY" in res.stdout and "key.signature" in res.stdout
    assert not r.exists(f"{prefix}hb:position_engine"), "validate-only must not start trading"
    res, _pe = run({"PAPER_CAN_TRADE": "false"}, cmd="engine", LIVE_VALIDATE_ONLY="1")
    assert res.returncode == 1 and "FAIL  account.can_trade" in res.stdout
