"""/metrics during a demo-like trade on the real stack (redis-server, paper exchange, the services, the metrics
process), parsed with prometheus_client's own parser."""
from __future__ import annotations

from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.redis_helpers import free_port
from tests.stack import Stack


@pytest.fixture()
def stack(tmp_path: Path, redis_url, market_file, market_bars, moment):
    s = Stack(tmp_path, redis_url, market_file, market_bars[moment.index + 1].ts,
              METRICS_PORT=str(free_port()), METRICS_CACHE_SEC="0.2")
    s.start_all()
    s.start("metrics")
    yield s
    s.stop_all()


def scrape(s: Stack) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of /metrics: (name, sorted labels) -> value."""
    text = requests.get(f"http://127.0.0.1:{s.env['METRICS_PORT']}/metrics", timeout=10).text
    out = {}
    for fam in text_string_to_metric_families(text):
        for smp in fam.samples:
            out[(smp.name, tuple(sorted(smp.labels.items())))] = smp.value
    return out


def scrape_ok(s: Stack):
    try:
        return scrape(s)
    except requests.ConnectionError:
        return None


def value(m, name: str, **labels: str) -> float | None:
    return m.get((name, tuple(sorted(labels.items()))))


def _legs_resting(s: Stack) -> bool:
    opened = [o for o in s.open_orders() if "-en-" not in o["clientOrderId"]]
    return len([o for o in opened if o["type"] == "STOP_LOSS_LIMIT"]) == 3


def test_metrics_follow_a_trade(stack: Stack, market_bars, moment):
    s = stack
    m = s.wait(lambda: scrape_ok(s), 30, "metrics answering")
    assert value(m, "executor_redis_up") == 1
    assert value(m, "executor_position_phase", phase="FLAT") == 1
    assert value(m, "executor_position_stop_coverage_ratio") == 1  # nothing held: nothing to protect
    with open(s.env["DELTASCOUT_LOG"], "a") as fh:
        fh.write("{not json\n")  # one rejected line
    s.append_peak("long", market_bars[moment.index].close)
    s.wait(lambda: _legs_resting(s), 30, "three exit legs resting")

    def covered():
        m = scrape(s)
        ok = (value(m, "executor_position_phase", phase="OPEN_FILLED") == 1
              and value(m, "executor_position_held_qty", ) > 0
              and value(m, "executor_position_stop_coverage_ratio") == 1
              and value(m, "executor_unprotected_seconds") == 0)
        return m if ok else None
    m = s.wait(covered, 20, "coverage 1 and nothing unprotected while the legs rest")
    assert value(m, "executor_position_stop_covered_qty") == value(m, "executor_position_held_qty")
    assert value(m, "executor_position_stop_price") > 0
    assert value(m, "executor_fill_to_first_stop_seconds_count") == 1
    assert 0 < value(m, "executor_last_trade_unprotected_worst_seconds") < 30
    # Signals by outcome match the streams.
    planned = [e for e in s.events() if e.kind == "entry_planned"]
    assert value(m, "executor_signals_total", outcome="traded", reason="") == len(planned) == 1
    rejects = s.r.xlen(f"{s.prefix}rejects")
    assert rejects >= 1
    assert sum(v for (n, lb), v in m.items() if n == "executor_signals_total" and ("outcome", "rejected") in lb) \
        == rejects
    assert value(m, "executor_stream_length", stream="signals") == s.r.xlen(f"{s.prefix}signals") == 1
    assert value(m, "executor_exchange_up") == 1 and value(m, "executor_exchange_missing_orders") == 0
    assert value(m, "executor_process_up", process="exit_manager") == 1
    # A killed process: its heartbeat age keeps growing, past its TTL, and it is down.
    s.kill("signal_ingest")
    ttl = float(s.env["HEARTBEAT_TTL_SEC"])
    first = value(scrape(s), "executor_process_heartbeat_age_seconds", process="signal_ingest")
    m = s.wait(lambda: (lambda m: m if value(m, "executor_process_heartbeat_age_seconds", process="signal_ingest")
                        > ttl + 1 else None)(scrape(s)), 30, "heartbeat age past the TTL")
    assert value(m, "executor_process_heartbeat_age_seconds", process="signal_ingest") > first
    assert value(m, "executor_process_up", process="signal_ingest") == 0
    assert value(m, "executor_process_up", process="position_engine") == 1


def test_metrics_after_a_closed_trade(stack: Stack, market_bars, moment):
    s = stack
    s.append_peak("long", market_bars[moment.index].close)
    s.wait(lambda: _legs_resting(s), 30, "three exit legs resting")
    s.admin("/speed", {"speed": 240})
    s.wait(lambda: s.state().closed_count == 1 and s.state().position is None, 120, "position closed")
    m = s.wait(lambda: (lambda m: m if value(m, "executor_position_phase", phase="FLAT") == 1 else None)(scrape(s)),
               20, "metrics flat again")
    moves = [e for e in s.events() if e.kind == "stop_move"]
    assert moves, "the demo trade moves its stop (break-even after TP1)"
    assert value(m, "executor_stop_move_seconds_count") == len(moves)
    assert value(m, "executor_unprotected_seconds") == 0
    trades = {lb: v for (n, lb), v in m.items() if n == "executor_trades_total"}
    assert sum(trades.values()) == 1
    reason = s.events("position_closed")[-1].data.get("reason")
    assert trades[(("reason", str(reason)),)] == 1
    assert value(m, "executor_win_rate_ratio") in (0.0, 1.0)
    assert value(m, "executor_realised_pnl_quote", period="all") == pytest.approx(
        value(m, "executor_realised_pnl_quote", period="today"))
