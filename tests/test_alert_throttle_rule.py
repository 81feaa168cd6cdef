"""The one alert throttle's rule (shared.domain.alert_throttle.decide), pure: the watchdog's store (Throttle, kept
in `watchdog:throttle`) and every other process's store (one Redis record per cause, AlertGate) take the same
decisions with the same counts, from one severity table."""
from __future__ import annotations

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain import invariants
from shared.domain.alert_throttle import SEV_RANK, Record, Throttle, decide, severity_name
from shared.domain.invariants import Finding

NOW = 1_800_000_000.0
SEVS = ["INFO", "WARN", "ERROR", "CRITICAL"]


def test_one_severity_table():
    assert invariants.SEV_RANK is SEV_RANK and invariants.Throttle is Throttle
    assert [SEV_RANK[s] for s in SEVS] == [0, 1, 2, 3] and severity_name("warning") == "WARN"


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SEVS + ["WARNING"]), st.floats(0, 80)), max_size=40))
def test_the_watchdogs_store_and_the_redis_records_decide_alike(seq):
    """One cause: Throttle.allow (JSON round trip of its state every step, as the watchdog persists it) and the
    Record chain AlertGate keeps (JSON round trip too) send the same alerts and count the same held back."""
    t_state: dict = {}
    rec: Record | None = None
    now = NOW
    for sev, dt in seq:
        now += dt
        t = Throttle(100, msgspec.json.decode(msgspec.json.encode(t_state)))
        f = Finding(check="I1", severity=severity_name(sev), message="m", trade_key="tk", subject="trail")
        sent = t.allow(f, now)
        d = decide(rec, now, 100, sev)
        assert sent == d.send
        if sent:
            assert t.released[Throttle.base_key(f)] == d.held_back
        else:
            assert t.state[f"{Throttle.base_key(f)}|held"][0] == d.record.held
        t_state = t.state
        rec = msgspec.json.decode(msgspec.json.encode(d.record), type=Record)


def test_a_higher_severity_at_once_each_severity_once_a_window():
    d1 = decide(None, NOW, 600, "ERROR")
    d2 = decide(d1.record, NOW + 1, 600, "ERROR")
    d3 = decide(d2.record, NOW + 2, 600, "CRITICAL")
    d4 = decide(d3.record, NOW + 3, 600, "ERROR")
    d5 = decide(d4.record, NOW + 601, 600, "ERROR")
    assert [d.send for d in (d1, d2, d3, d4, d5)] == [True, False, True, False, True]
    assert (d3.held_back, d5.held_back) == (1, 1)


def test_a_record_written_before_sent_existed_still_holds_its_severity_back():
    old = msgspec.json.decode(b'{"at": 1800000000.0, "rank": 2, "held": 2, "total_held": 5, "first": 1799999000.0}',
                              type=Record)
    d = decide(old, NOW + 10, 600, "ERROR")
    assert not d.send and d.held_back == 3 and d.record.total_held == 6
    assert decide(old, NOW + 11, 600, "CRITICAL").send
