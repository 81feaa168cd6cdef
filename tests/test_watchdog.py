"""The watchdog service on a real Redis: findings -> alerts/events/webhook jobs, throttled across restarts; the
I13 kill switch sets the halt flag (and nothing else); the state is never written; heartbeats of a stopped
process are reported by the real `python -m services.watchdog` within the deadline."""
from __future__ import annotations

import base64
import io
import json
import time
from decimal import Decimal as D

import redis

from shared.adapters.heartbeat import beat
from shared.adapters.notify import queue as notify_queue
from shared.adapters.redis_streams import decode_fields
from shared.clock import ReplayClock
from shared.config import load_config
from shared.domain.position import ClosedTrade, State, encode_state
from shared.jsonlog import JsonLogger
from services.watchdog.service import Watchdog
from tests.test_invariants import NOW, TK, orders_for, position
from tests.wd_helpers import (
    DictExchange, WebhookReceiver, redis_server, service_env, start_service, stop_service, wait_for,
)

PREFIX = "t:"


def cfg(redis_url: str, **env):
    base = {"REDIS_URL": redis_url, "EXEC_PREFIX": PREFIX, "CLOCK": "replay", "AGG_CSV": "", "BINANCE_BASE_URL": "http://127.0.0.1:9",
            "N8N_WEBHOOK_URL": "http://127.0.0.1:9/never-called"}
    base.update({k: str(v) for k, v in env.items()})
    return load_config(base)


def set_clock(r, t: float) -> None:
    r.set(PREFIX + "clock", int(t * 1000))


def make_wd(r, c, provider=None) -> tuple[Watchdog, io.StringIO]:
    buf = io.StringIO()
    return Watchdog(r, c, ReplayClock(r, PREFIX + "clock"), provider, processes=[],
                    log=JsonLogger("watchdog", buf)), buf


def alerts(r) -> list:
    return [decode_fields(f) for _, f in r.xrange(PREFIX + "alerts")]


def events(r) -> list:
    return [decode_fields(f) for _, f in r.xrange(PREFIX + "events")]


def put_state(r, st: State) -> bytes:
    raw = encode_state(st)
    r.set(PREFIX + "state", raw)
    return raw


def write_feed(tmp_path, ts: float):
    from shared.domain.bars import AGG_HEADER_LINE, format_ts
    p = tmp_path / "aggregated.csv"
    p.write_text(AGG_HEADER_LINE + "\n" + f"{format_ts(int(ts))},10,1.0,0.1,0.5,0.5,95000,95000,95010,94990\n")
    return str(p)


def test_healthy_state_is_quiet_and_state_untouched(r, redis_url, tmp_path):
    pos = position()
    raw = put_state(r, State(version=7, position=pos))
    set_clock(r, NOW)
    wd, _ = make_wd(r, cfg(redis_url, AGG_CSV=write_feed(tmp_path, NOW - 60)), DictExchange(orders_for(pos)))
    res = wd.invariant_tick()
    assert res.findings == [] and alerts(r) == []
    assert r.get(PREFIX + "state") == raw and not r.exists(PREFIX + "halt")


def test_unprotected_position_alerts_once_then_throttled_across_restart(r, redis_url, tmp_path):
    pos = position(side="short")
    raw = put_state(r, State(version=7, position=pos))
    set_clock(r, NOW)
    ex = DictExchange(orders_for(pos, skip=("trail",)))
    c = cfg(redis_url, AGG_CSV=write_feed(tmp_path, NOW - 60))
    wd, log = make_wd(r, c, ex)
    wd.invariant_tick()
    got = alerts(r)
    assert [(a.check, a.severity, a.trade_key) for a in got] == [("I1", "CRITICAL", TK)]
    assert got[0].details["legs"] == ["trail"] and got[0].details["age_sec"] == 300
    ev = [e for e in events(r) if e.kind == "finding"]
    assert len(ev) == 1 and ev[0].data["check"] == "I1" and ev[0].trade_key == TK
    jobs = notify_queue(r, PREFIX).jobs
    assert len(jobs) == 1 and jobs[0].args[0]["severity"] == "CRITICAL" and jobs[0].args[0]["trade_key"] == TK
    line = json.loads(log.getvalue().splitlines()[-1])
    assert line["event"] == "finding" and line["level"] == "ERROR" and line["trade_key"] == TK
    # throttled: same finding again, also from a restarted watchdog (throttle state is in Redis)
    wd.invariant_tick()
    wd2, _ = make_wd(r, c, ex)
    set_clock(r, NOW + 20)
    wd2.invariant_tick()
    assert len(alerts(r)) == 1 and r.exists(PREFIX + "watchdog:throttle")
    assert r.get(PREFIX + "state") == raw


def test_escalation_warn_to_error_goes_through(r, redis_url):
    pos = position()
    pos.legs[0].tp_client_id = ""
    pos.filled_at = NOW - 5          # inside grace: WARN
    put_state(r, State(position=pos))
    set_clock(r, NOW)
    pos_orders = DictExchange(orders_for(pos))
    wd, _ = make_wd(r, cfg(redis_url), pos_orders)
    wd.invariant_tick()
    set_clock(r, NOW + 3)
    wd.invariant_tick()              # still WARN: throttled
    set_clock(r, NOW + 20)
    wd.invariant_tick()              # grace over: ERROR, not throttled
    got = [(a.check, a.severity) for a in alerts(r) if a.check == "I7"]
    assert got == [("I7", "WARN"), ("I7", "ERROR")]


def test_exchange_unavailable_is_reported(r, redis_url):
    pos = position()
    put_state(r, State(position=pos))
    set_clock(r, NOW)
    ex = DictExchange()
    ex.fail = ConnectionError("exchange down")
    wd, _ = make_wd(r, cfg(redis_url), ex)
    wd.invariant_tick()
    got = {(a.check, a.severity) for a in alerts(r)}
    assert ("EXCH", "WARN") in got and not any(a.check == "I1" for a in alerts(r))


def test_undecodable_state_is_an_error(r, redis_url):
    r.set(PREFIX + "state", b"{not json")
    set_clock(r, NOW)
    wd, _ = make_wd(r, cfg(redis_url))
    wd.invariant_tick()
    assert [(a.check, a.severity) for a in alerts(r)] == [("STATE", "ERROR")]
    assert r.get(PREFIX + "state") == b"{not json"


def closed_state() -> State:
    lc = ClosedTrade(trade_key=TK, symbol="BTCUSDC", side="long", qty=D("0.001"), avg_entry=D(95000),
                     avg_exit=D(94810), pnl_quote=D("-0.19"), r_multiple=D(-1), exit_reason="stop",
                     opened_at=NOW - 900, closed_at=NOW - 10)
    return State(version=11, last_closed=lc, cooldown_until=NOW + 170)


MARGIN_ENV = dict(TRADE_MODE="margin", MARGIN_BORROW_MODE="manual", MARGIN_SIDE_EFFECT="NO_SIDE_EFFECT",
                  I13_GRACE_SEC=5, I13_ESCALATE_SEC=30, I13_EXCHANGE_MIN_INTERVAL_SEC=0)


def test_i13_kill_sets_halt_and_never_writes_state(r, redis_url):
    raw = put_state(r, closed_state())
    ex = DictExchange(debts={"USDC": D("95.2"), "BTC": D(0), "ETH": D(7)})
    c = cfg(redis_url, INVAR_KILL_ON_DEBT=1, **MARGIN_ENV)
    wd, log = make_wd(r, c, ex)
    set_clock(r, NOW)
    wd.invariant_tick()
    assert [(a.check, a.severity) for a in alerts(r)] == [("I13", "WARN")]
    assert not r.exists(PREFIX + "halt")
    ep = json.loads(r.get(PREFIX + "watchdog:i13"))
    assert ep["first_seen"] == NOW and ep["debts"] == {"USDC": "95.2"}
    # a restarted watchdog keeps the episode; past I13_ESCALATE_SEC: ERROR + halt
    wd, log = make_wd(r, c, ex)
    set_clock(r, NOW + 31)
    wd.invariant_tick()
    assert [(a.check, a.severity) for a in alerts(r)] == [("I13", "WARN"), ("I13", "ERROR")]
    halt = json.loads(r.get(PREFIX + "halt"))
    assert halt["by"] == "watchdog" and halt["check"] == "I13" and halt["trade_key"] == TK
    assert "USDC 95.2" in halt["reason"] and halt["debts"] == {"USDC": "95.2"}
    assert any(json.loads(ln)["event"] == "halt_set" for ln in log.getvalue().splitlines())
    assert [e.kind for e in events(r) if e.kind.startswith("halt")] == ["halt_set"]
    assert r.get(PREFIX + "state") == raw  # detector only
    # an operator resumes: the watchdog does not halt again for the same episode
    r.delete(PREFIX + "halt")
    set_clock(r, NOW + 60)
    wd.invariant_tick()
    assert not r.exists(PREFIX + "halt")


def test_i13_without_kill_and_existing_halt_is_kept(r, redis_url):
    put_state(r, closed_state())
    ex = DictExchange(debts={"USDC": D(5)})
    wd, _ = make_wd(r, cfg(redis_url, **MARGIN_ENV), ex)
    set_clock(r, NOW)
    wd.invariant_tick()
    set_clock(r, NOW + 40)
    wd.invariant_tick()
    assert [(a.check, a.severity) for a in alerts(r)] == [("I13", "WARN"), ("I13", "ERROR")]
    assert not r.exists(PREFIX + "halt")
    # with kill on, an operator's halt already present is not overwritten
    r.flushdb()
    put_state(r, closed_state())
    r.set(PREFIX + "halt", b'{"by":"operator","reason":"maintenance"}')
    wd, _ = make_wd(r, cfg(redis_url, INVAR_KILL_ON_DEBT=1, **MARGIN_ENV), ex)
    set_clock(r, NOW)
    wd.invariant_tick()
    set_clock(r, NOW + 40)
    wd.invariant_tick()
    assert json.loads(r.get(PREFIX + "halt"))["by"] == "operator"


def test_i13_debt_fetch_is_rate_limited(r, redis_url):
    put_state(r, closed_state())
    ex = DictExchange(debts={"USDC": D(5)})
    wd, _ = make_wd(r, cfg(redis_url, **{**MARGIN_ENV, "I13_EXCHANGE_MIN_INTERVAL_SEC": 3600}), ex)
    for i in range(3):
        set_clock(r, NOW + i * 20)
        wd.invariant_tick()
    assert ex.calls["margin_debts"] == 1


def test_halt_flag_reported_once_per_change(r, redis_url):
    wd, _ = make_wd(r, cfg(redis_url))
    wd.heartbeat_tick()
    r.set(PREFIX + "halt", b'{"by":"operator","reason":"x"}')
    wd.heartbeat_tick()
    wd.heartbeat_tick()
    r.delete(PREFIX + "halt")
    wd.heartbeat_tick()
    wd.heartbeat_tick()
    got = [(a.check, a.severity, a.details["present"]) for a in alerts(r)]
    assert got == [("HALT", "INFO", True), ("HALT", "INFO", False)]
    assert [e.data["present"] for e in events(r) if e.kind == "halt_flag"] == [True, False]
    assert r.exists(PREFIX + "hb:watchdog")


def test_watchdog_subprocess_reports_stopped_heartbeat_and_webhook_delivered(redis_url, r, tmp_path):
    """The real watchdog and notifier processes: a test-owned process stops beating; the watchdog reports it
    within its deadline, the CRITICAL goes through rq to a real HTTP receiver with basic auth."""
    deadline = 2
    raw = put_state(r, State(version=5))
    with WebhookReceiver(200) as rx:
        settings = dict(WATCHDOG_PROCESSES="testproc", HEARTBEAT_TTL_SEC=deadline, INVAR_EVERY_SEC=1,
                        N8N_WEBHOOK_URL=rx.url, N8N_BASIC_AUTH_USER="ops", AGG_CSV="")
        env = service_env(redis_url, "watchdog", **settings)
        beat(r, PREFIX, "testproc", 30)  # alive while the watchdog starts
        wd = start_service("services.watchdog", env, log_path=tmp_path / "watchdog.log")
        nt = start_service("services.notifier", service_env(redis_url, "notifier", N8N_BASIC_AUTH_PASSWORD="pw-123",
                                                            **settings), log_path=tmp_path / "notifier.log")
        try:
            wait_for(lambda: r.exists(PREFIX + "hb:watchdog"), 15, what="watchdog heartbeat")
            beat(r, PREFIX, "testproc", deadline)  # its last beat: the key expires after `deadline`
            last_beat = time.time()
            hb = wait_for(lambda: [a for a in alerts(r) if a.check == "HB"], 15, what="HB alert")
            detected = time.time()
            a = hb[0]
            assert a.severity == "CRITICAL" and a.details["process"] == "testproc"
            assert a.at >= last_beat + deadline - 0.5          # not before it was dead
            assert detected - (last_beat + deadline) <= deadline + 1.5  # within its deadline (+ one tick)
            body = wait_for(rx.json_bodies, 15, what="webhook delivery")[0]
            assert body["severity"] == "CRITICAL" and body["details"]["process"] == "testproc"
            assert rx.requests[0]["headers"]["Authorization"] == "Basic " + base64.b64encode(b"ops:pw-123").decode()
            # the process comes back: an INFO recovery, and no repeated CRITICAL (throttled)
            beat(r, PREFIX, "testproc", 30)
            wait_for(lambda: [a for a in alerts(r) if a.severity == "INFO" and a.check == "HB"], 10,
                     what="recovery")
            assert r.exists(PREFIX + "hb:notifier")
        finally:
            stop_service(wd)
            stop_service(nt)
    assert r.get(PREFIX + "state") == raw
    assert len([a for a in alerts(r) if a.check == "HB" and a.severity == "CRITICAL"]) == 1
    logs = (tmp_path / "watchdog.log").read_text() + (tmp_path / "notifier.log").read_text()
    assert "pw-123" not in logs and "secret-token" not in logs


def test_broken_redis_persistence_is_reported(tmp_path):
    """A real failed RDB save (its directory removed under Redis) is an ERROR finding."""
    gone = tmp_path / "rdb-dir"
    gone.mkdir()
    with redis_server(extra_args=("--enable-protected-configs", "yes")) as url:
        conn = redis.Redis.from_url(url)
        conn.config_set("dir", str(gone))
        gone.rmdir()
        conn.bgsave()
        wait_for(lambda: conn.info("persistence")["rdb_last_bgsave_status"] == "err"
                 and not conn.info("persistence")["rdb_bgsave_in_progress"], 10, what="failed bgsave")
        wd, _ = make_wd(conn, cfg(url))
        set_clock(conn, NOW)
        wd.invariant_tick()
        assert [(a.check, a.severity, a.details["subject"]) for a in alerts(conn)] == [("REDIS", "ERROR", "rdb")]
        conn.close()


def test_under_replay_every_watchdog_record_carries_market_time(r, redis_url):
    """CLOCK=replay: heartbeat findings, their recovery and the halt-flag records carry the market time like every
    other service's events (liveness itself is judged on wall time, which heartbeats carry)."""
    market = NOW - 86_400 * 300  # far from the wall clock: a record stamped with wall time cannot pass
    set_clock(r, market)
    c = cfg(redis_url, HEARTBEAT_TTL_SEC=2)
    wall = [time.time() - 5]  # the watchdog started 5 s ago (wall), past its start-up grace: ghost never beat
    wd = Watchdog(r, c, ReplayClock(r, PREFIX + "clock"), None, processes=["ghost"],
                  log=JsonLogger("watchdog", io.StringIO()), wall=lambda: wall[0])
    wall[0] = time.time()
    r.set(PREFIX + "halt", b'{"by":"operator","reason":"x"}')
    wd.heartbeat_tick()
    beat(r, PREFIX, "ghost", 30)
    wall[0] = time.time()
    wd.heartbeat_tick()
    got = [(a.check, a.severity, a.at) for a in alerts(r)]
    assert ("HB", "CRITICAL", market) in got and ("HB", "INFO", market) in got and ("HALT", "INFO", market) in got
    assert all(a.at == market for a in alerts(r)), got
    assert all(e.at == market for e in events(r)), [(e.kind, e.at) for e in events(r)]
    assert {e.kind for e in events(r)} >= {"finding", "halt_flag"}


def test_a_finding_after_the_throttle_counts_what_was_held_back_and_its_end_is_said(r, redis_url, tmp_path):
    """I1 (no stop for the trailing leg) every run: one CRITICAL, the repeats held back and counted; after
    INVAR_THROTTLE_SEC the next says how many; once the stop is there, an INFO "recovered" alert and webhook."""
    pos = position(side="short")
    put_state(r, State(version=7, position=pos))
    set_clock(r, NOW)
    ex = DictExchange(orders_for(pos, skip=("trail",)))
    c = cfg(redis_url, AGG_CSV=write_feed(tmp_path, NOW - 60), INVAR_THROTTLE_SEC=600)
    wall = [1_000.0]
    wd = Watchdog(r, c, ReplayClock(r, PREFIX + "clock"), ex, processes=[],
                  log=JsonLogger("watchdog", io.StringIO()), wall=lambda: wall[0])
    for i in range(4):
        wall[0] += 20
        wd.invariant_tick()
    assert [(a.check, a.severity) for a in alerts(r)] == [("I1", "CRITICAL")]
    wall[0] += 600
    wd.invariant_tick()
    second = alerts(r)[-1]
    assert second.check == "I1" and second.details["held_back"] == 3 and "(3 more held back" in second.message
    ex.orders = orders_for(pos)                         # the trailing stop is on the exchange again
    wall[0] += 20
    wd.invariant_tick()
    rec = alerts(r)[-1]
    assert (rec.check, rec.severity, rec.trade_key) == ("I1", "INFO", TK) and rec.details["recovered"] == "I1"
    jobs = [j.args[0] for j in notify_queue(r, PREFIX).jobs]
    assert [(j["event"], j["severity"]) for j in jobs] == [("watchdog.I1", "CRITICAL")] * 2 + [("watchdog.I1", "INFO")]
    wall[0] += 20
    wd.invariant_tick()
    assert alerts(r)[-1] == rec                          # said once


def test_redis_without_aof_or_rdb_is_reported_from_info_alone(tmp_path):
    """INFO persistence of real servers (no CONFIG GET: the ACL does not give it to the watchdog): a Redis with
    `save ""` and no AOF holding changes unsaved for over an hour is a WARN; with AOF on, or RDB saving, none."""
    from shared.domain.redis_durability import RDB_MAX_GAP_SEC, check_redis_durability
    with redis_server() as url:                                     # tests' Redis: save "" and appendonly no
        conn = redis.Redis.from_url(url)
        conn.set("k", "v")
        info = conn.info("persistence")
        sec, _ = conn.time()
        assert check_redis_durability(info, sec) == []               # just started: nothing at risk yet
        (f,) = check_redis_durability(info, sec + RDB_MAX_GAP_SEC + 60)
        assert (f.check, f.severity, f.subject) == ("REDIS", "WARN", "persistence") and "appendonly" in f.message
        # the real watchdog on the same server: quiet now (the window has not passed on the server's clock)
        wd, _ = make_wd(conn, cfg(url))
        set_clock(conn, NOW)
        wd.invariant_tick()
        assert [a for a in alerts(conn) if a.details.get("subject") == "persistence"] == []
        conn.close()
    with redis_server(extra_args=("--appendonly", "yes")) as url:
        conn = redis.Redis.from_url(url)
        conn.set("k", "v")
        sec, _ = conn.time()
        assert check_redis_durability(conn.info("persistence"), sec + 10 * RDB_MAX_GAP_SEC) == []
        conn.close()
    with redis_server(extra_args=("--save", "1 1")) as url:          # RDB saving every second with a change
        conn = redis.Redis.from_url(url)
        conn.set("k", "v")
        wait_for(lambda: conn.info("persistence")["rdb_changes_since_last_save"] == 0, 10, what="RDB save")
        sec, _ = conn.time()
        assert check_redis_durability(conn.info("persistence"), sec + 10 * RDB_MAX_GAP_SEC) == []
        conn.close()
