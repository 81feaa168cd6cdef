"""Replay, feed file, market clock, persistence across restarts, settings and the process entry point."""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import redis
import requests

from shared.adapters.binance_rest import BinanceClient
from shared.domain.bars import AGG_HEADER_LINE, format_row
from services.paper_exchange.market import bar_points
from services.paper_exchange.settings import SettingsError, from_env

from tests.pe_helpers import HISTORY, SYMBOL, Paper, sample_bars, paper_env, start_process, wait_until

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def paper(tmp_path):
    p = Paper(paper_env(tmp_path))
    yield p
    p.stop()


def _feed(p: Paper) -> list[str]:
    return Path(p.env["PAPER_FEED_CSV"]).read_text().splitlines()


def test_feed_grows_one_row_per_completed_bar(paper):
    bars = sample_bars()
    lines = _feed(paper)
    assert lines[0] == AGG_HEADER_LINE
    assert lines[1:] == [format_row(b) for b in bars[:HISTORY]]
    assert paper.post("/admin/advance", {"points": 3})["advanced"] == 3
    assert len(_feed(paper)) == 1 + HISTORY  # the bar is not complete at +45 s: no future leaks
    paper.post("/admin/advance", {"points": 1})
    lines = _feed(paper)
    assert len(lines) == 2 + HISTORY and lines[-1] == format_row(bars[HISTORY])
    paper.post("/admin/advance", {"to_ts": bars[HISTORY + 5].ts})
    lines = _feed(paper)
    assert lines[1:] == [format_row(b) for b in bars[:HISTORY + 5]]
    assert paper.get("/admin/state")["market_ts"] == bars[HISTORY + 5].ts


def test_price_points_follow_the_bar(paper):
    bars = sample_bars()
    bar, prev = bars[HISTORY], bars[HISTORY - 1]
    expected = bar_points(bar, prev.close)
    assert paper.last() == expected[0] == prev.close
    seen = []
    for _ in range(3):
        paper.post("/admin/advance", {"points": 1})
        seen.append(paper.last())
    assert seen == expected[1:]
    up = bar.close >= prev.close
    assert seen[:2] == ([bar.low, bar.high] if up else [bar.high, bar.low])


def test_orders_match_during_replay(paper):
    bars = sample_bars()
    c = paper.client()
    lo = min(b.low for b in bars[HISTORY:HISTORY + 20])
    target = lo + Decimal("0.01")
    o = c.place_order(SYMBOL, "BUY", "LIMIT", Decimal("0.001"), price=target, time_in_force="GTC",
                      client_order_id="rp1")
    paper.post("/admin/advance", {"points": 80})
    got = c.get_order(SYMBOL, order_id=o.order_id)
    assert got.status == "FILLED" and got.fills == [] and got.update_time > got.time  # filled in market time


def test_replay_stops_at_the_end_and_keeps_serving(paper):
    bars = sample_bars()
    r = paper.post("/admin/advance", {"points": 100_000})
    assert r["replay"]["done"] and r["advanced"] == (len(bars) - HISTORY) * 4 - 1
    assert _feed(paper)[1:] == [format_row(b) for b in bars]
    assert paper.post("/admin/advance", {"points": 5})["advanced"] == 0
    assert paper.last() == bars[-1].close
    assert paper.client().open_orders(SYMBOL) == []


def test_replay_thread_follows_speed(paper):
    t0 = paper.get("/admin/state")["market_ts"]
    paper.post("/admin/speed", {"speed": 3000})  # a point every 5 ms
    wait_until(lambda: paper.get("/admin/state")["market_ts"] >= t0 + 120, what="replay to advance 2 minutes")
    paper.post("/admin/speed", {"speed": 0})
    assert paper.get("/admin/state")["speed"] == 0


def test_restart_restores_orders_balances_and_cursor(tmp_path):
    env = paper_env(tmp_path)
    p = Paper(env)
    c = p.client()
    last = p.last()
    c.place_order(SYMBOL, "BUY", "LIMIT", Decimal("0.01"), price=last - 500, time_in_force="GTC",
                  client_order_id="keep")
    c.place_order(SYMBOL, "BUY", "MARKET", Decimal("0.01"), client_order_id="mkt")
    p.post("/admin/advance", {"points": 6})
    before_state, before_orders, before_bal = p.get("/admin/state"), p.get("/admin/orders"), c.account()
    before_feed = _feed(p)
    p.stop()
    q = Paper(env)
    try:
        c2 = q.client()
        assert q.get("/admin/orders") == before_orders
        assert c2.account() == before_bal
        after = q.get("/admin/state")
        assert (after["replay"], after["last"], after["market_ts_ms"]) == (
            before_state["replay"], before_state["last"], before_state["market_ts_ms"])
        assert _feed(q) == before_feed
        assert c2.get_order(SYMBOL, client_order_id="keep").status == "NEW"
        new = c2.place_order(SYMBOL, "BUY", "MARKET", Decimal("0.01"), client_order_id="after")
        assert new.order_id > max(o["orderId"] for o in before_orders)
        assert new.fills[0].trade_id == 2
    finally:
        q.stop()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(shutil.which("redis-server") is None, reason="redis-server not installed")
def test_market_clock_published_to_redis(tmp_path):
    port = _free_port()
    srv = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly", "no"],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    r = redis.Redis(port=port)

    def up() -> bool:
        try:
            return bool(r.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_until(up, what="redis-server")
        p = Paper(paper_env(tmp_path, PAPER_CLOCK_REDIS_URL=f"redis://127.0.0.1:{port}/0", EXEC_PREFIX="t1:"))
        try:
            p.post("/admin/advance", {"points": 2})
            assert int(r.get("t1:clock")) == p.get("/admin/state")["market_ts_ms"]
        finally:
            p.stop()
    finally:
        r.close()
        srv.terminate()
        srv.wait(timeout=5)


@pytest.mark.parametrize("var,value", [
    ("PAPER_SPEED", "fast"), ("PAPER_PORT", "99999"), ("PAPER_BALANCES", "USDC:10"),
    ("TICK_SIZE", "-1"), ("PAPER_START_TS", "yesterday"), ("PAPER_PARTIAL_FILL_RATIO", "2"), ("SYMBOL", "XYZ"),
    ("PAPER_BNB_PRICE", "0"), ("PAPER_BNB_PRICE", "cheap"), ("PAPER_BNB_PRICE", "inf"), ("PAPER_BNB_BURN", "maybe"),
])
def test_bad_setting_names_the_variable(var, value):
    with pytest.raises(SettingsError) as ei:
        from_env({var: value})
    assert var in str(ei.value)


def test_process_entry_point(tmp_path):
    env = {**os.environ, **paper_env(tmp_path), "PYTHONPATH": str(REPO)}
    bad = subprocess.run([sys.executable, "-m", "services.paper_exchange"], cwd=REPO, capture_output=True,
                         text=True, timeout=30, env={**env, "PAPER_SPEED": "fast"})
    assert bad.returncode == 2 and "PAPER_SPEED" in bad.stderr
    proc, url = start_process(paper_env(tmp_path))
    try:
        assert requests.get(f"{url}/api/v3/ping", timeout=5).json() == {}
    finally:
        proc.terminate()
        assert proc.wait(timeout=10) == 0


def test_killed_process_recovers_every_acknowledged_order_from_the_journal(tmp_path):
    env = paper_env(tmp_path, PAPER_SNAPSHOT_EVERY="1000")  # no snapshot in between: the journal must carry it
    proc, url = start_process(env)
    try:
        c = BinanceClient(url, env["PAPER_API_KEY"], env["PAPER_API_SECRET"])
        admin = requests.Session()
        last = Decimal(admin.get(f"{url}/admin/state", timeout=5).json()["last"])
        c.place_order(SYMBOL, "BUY", "LIMIT", Decimal("0.01"), price=last - 300, time_in_force="GTC",
                      client_order_id="k1")
        c.place_order(SYMBOL, "SELL", "MARKET", Decimal("0.01"), client_order_id="k2")
        c.place_oco(SYMBOL, "SELL", Decimal("0.1"), above_type="LIMIT_MAKER", above_price=last + 300,
                    below_type="STOP_LOSS_LIMIT", below_stop_price=last - 200, below_price=last - 210,
                    below_time_in_force="GTC", list_client_order_id="kl", above_client_order_id="ka",
                    below_client_order_id="kb")
        admin.post(f"{url}/admin/advance", json={"points": 9}, timeout=5)
        admin.post(f"{url}/admin/price", json={"price": str(last - 250)}, timeout=5)
        before = (admin.get(f"{url}/admin/orders", timeout=5).json(), c.account(),
                  admin.get(f"{url}/admin/state", timeout=5).json())
        c.close()
    finally:
        proc.kill()  # SIGKILL: no shutdown snapshot
        proc.wait(timeout=5)
    journal = Path(env["PAPER_STATE_FN"] + ".journal")
    assert journal.stat().st_size > 0
    with open(journal, "ab") as f:
        f.write(b'{"seq": 99999, "cmd": {"type": "pla')  # a torn write that was never acknowledged
    proc, url = start_process(env)
    try:
        c = BinanceClient(url, env["PAPER_API_KEY"], env["PAPER_API_SECRET"])
        assert requests.get(f"{url}/admin/orders", timeout=5).json() == before[0]
        assert c.account() == before[1]
        after = requests.get(f"{url}/admin/state", timeout=5).json()
        assert (after["replay"], after["last"], after["market_ts_ms"]) == (
            before[2]["replay"], before[2]["last"], before[2]["market_ts_ms"])
        assert {o["clientOrderId"] for o in before[0]} == {"k1", "k2", "ka", "kb"}
        c.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_restart_keeps_the_feed_file_when_it_is_consistent(tmp_path):
    env = paper_env(tmp_path)
    p = Paper(env)
    p.post("/admin/advance", {"points": 9})
    feed = Path(env["PAPER_FEED_CSV"])
    inode, lines = feed.stat().st_ino, feed.read_text().splitlines()
    p.stop()
    q = Paper(env)
    try:
        assert feed.stat().st_ino == inode and feed.read_text().splitlines() == lines  # a tailer keeps its file
    finally:
        q.stop()
    feed.write_text("garbage\n")
    r = Paper(env)
    try:
        assert feed.read_text().splitlines() == lines  # not a prefix: rewritten whole
    finally:
        r.stop()


def _future_points(bars, first: int) -> list[Decimal]:
    """The prices the replay will play from a fresh start: bar `first` from its point 1, then every bar's 4."""
    out = bar_points(bars[first], bars[first - 1].close)[1:]
    for i in range(first + 1, len(bars)):
        out += bar_points(bars[i], bars[i - 1].close)
    return out


def test_advance_until_active_stops_at_the_first_point_that_reaches_an_order(paper):
    """A replay plays quiet stretches in one call: `until_active` plays every point up to and including the first
    whose move reaches a resting order, never past it (the processes must see that point as it happens)."""
    bars, c = sample_bars(), paper.client()
    pts = _future_points(bars, HISTORY)
    start = paper.last()
    low, j = start, None
    for i, px in enumerate(pts):
        if i >= 12 and low - px >= Decimal("0.05"):
            j = i
            break
        low = min(low, px)
    assert j is not None, "the sample bars make a new low after a dozen points"
    stop = ((low + pts[j]) / 2).quantize(Decimal("0.01"))
    assert pts[j] < stop < low
    c.place_order(SYMBOL, "SELL", "STOP_LOSS", Decimal("0.001"), stop_price=stop, client_order_id="ua1")
    far = bars[-1].ts
    doc = paper.post("/admin/advance", {"to_ts": far, "until_active": True})
    assert doc["advanced"] == j + 1, (doc["advanced"], j)
    assert paper.last() == pts[j]
    assert paper.order("ua1")["status"] == "FILLED"
    # nothing rests any more: the next call plays every point up to the asked time
    before = paper.get("/admin/state")["market_ts"]
    doc = paper.post("/admin/advance", {"to_ts": before + 600, "until_active": True})
    assert doc["market_ts"] == before + 600 and doc["advanced"] == 40


def test_advance_until_active_refuses_a_non_boolean(paper):
    r = requests.post(paper.url + "/admin/advance", json={"points": 3, "until_active": "yes"}, timeout=5)
    assert r.status_code == 400 and "until_active" in r.json()["error"]
    assert paper.get("/admin/state")["market_ts"] == sample_bars()[HISTORY].ts  # nothing played
