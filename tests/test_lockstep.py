"""The lock-step replay clock's protocol on a real redis-server (shared/adapters/lockstep.py): a stale
acknowledgement never settles a point, a busy iteration does not acknowledge, user-data events and fed lines are
waited for, and a dead or stuck process never freezes the clock (heartbeat gone: not waited for; alive but silent:
a bounded wait that says who it waited for)."""
from __future__ import annotations

import threading
import time

from shared.adapters.heartbeat import beat
from shared.adapters.lockstep import Conductor, LockStep, count_ws_event

P = "exec:"


def _alive(r, *names: str) -> None:
    for n in names:
        beat(r, P, n, 30)


def _both_idle(r) -> tuple[LockStep, LockStep]:
    pe, em = LockStep(r, P, "position_engine", True), LockStep(r, P, "exit_manager", True)
    for ls in (pe, em):
        ls.begin()
        assert ls.new_tick  # a new market time for both
        ls.end(busy=False)
    return pe, em


def test_settled_only_when_every_ack_matches_the_current_fingerprint(r):
    _alive(r, "position_engine", "exit_manager")
    c = Conductor(r, P, "", wait_sec=1)
    c.tick(1000)
    assert set(c.lagging(0)) == {"position_engine", "exit_manager"}  # nobody has seen the point yet
    pe, em = _both_idle(r)
    assert c.lagging(0) == []
    r.xadd(P + "orders", {"x": 1})           # somebody wrote after the acknowledgements: they are stale
    assert set(c.lagging(0)) == {"position_engine", "exit_manager"}
    pe.begin()
    pe.end(busy=True)                        # it had something to read: no acknowledgement
    assert "position_engine" in c.lagging(0)
    pe.begin()
    pe.end(busy=False)
    em.begin()
    assert not em.new_tick                   # same market time, only new writes
    em.end(busy=False)
    assert c.lagging(0) == []


def test_user_data_events_and_fed_lines_are_waited_for(r):
    _alive(r, "user_stream", "signal_ingest")
    c = Conductor(r, P, "", wait_sec=1)
    count_ws_event(r, P, "ws_sent", 2)
    assert c.lagging(0) == ["user_stream"]
    count_ws_event(r, P, "ws_recv")
    count_ws_event(r, P, "ws_recv")
    assert c.lagging(0) == []
    assert c.lagging(120) == ["signal_ingest"]  # 120 bytes fed, ingest has read none
    r.hset(P + "ingest:offset", mapping={"inode": 1, "offset": 120})
    assert c.lagging(120) == []


def test_a_dead_process_is_not_waited_for_and_a_silent_one_only_so_long(r):
    c = Conductor(r, P, "", wait_sec=0.3)
    c.tick(2000)
    assert c.settle(0, 2000) == []           # no heartbeat: killed processes never freeze the clock
    _alive(r, "exit_manager")
    t0 = time.monotonic()
    assert c.settle(0, 2000) == ["exit_manager"]
    assert 0.25 < time.monotonic() - t0 < 2 and c.timeouts == [{"market_ms": 2000, "waiting_for": ["exit_manager"]}]


def test_settle_wakes_on_the_acknowledgement(r):
    """The driver does not poll on a timer: the acknowledgement ends its wait."""
    _alive(r, "exit_manager")
    c = Conductor(r, P, "", wait_sec=5)
    c.tick(3000)
    em = LockStep(r, P, "exit_manager", True)

    def late_ack() -> None:
        time.sleep(0.2)  # the process is busy for a while (this stands in for its work, not for a sync)
        em.begin()
        em.end(busy=False)
    th = threading.Thread(target=late_ack)
    th.start()
    t0 = time.monotonic()
    assert c.settle(0, 3000) == []
    th.join()
    assert 0.15 < time.monotonic() - t0 < 1.5


def test_disabled_lockstep_writes_nothing(r):
    ls = LockStep(r, P, "exit_manager", False)
    ls.begin()
    ls.end(busy=False)
    assert not r.exists(P + "lockstep:acks") and not r.exists(P + "lockstep:acked") and not ls.new_tick


def test_lockstep_is_refused_outside_replay():
    """Live trading (CLOCK=wall) never waits for a replay driver: the setting is refused, naming both variables."""
    import pytest

    from shared.config import ConfigError, load_config
    with pytest.raises(ConfigError, match="REPLAY_LOCKSTEP.*CLOCK=replay"):
        load_config({"REPLAY_LOCKSTEP": "true"})
    assert load_config({"REPLAY_LOCKSTEP": "true", "CLOCK": "replay",
                        "BINANCE_BASE_URL": "http://127.0.0.1:9"}).REPLAY_LOCKSTEP is True
    assert load_config({}).REPLAY_LOCKSTEP is False


def test_processes_hold_while_user_data_events_are_on_their_way(r):
    """A point's order updates are acted on whole: while the exchange has queued more events than user_stream
    has handled, `ws_behind` holds the process (and an event lost on the way releases it after a bound)."""
    import shared.adapters.lockstep as ls_mod
    ls = LockStep(r, P, "exit_manager", True)
    count_ws_event(r, P, "ws_sent", 2)
    count_ws_event(r, P, "ws_recv")
    ls.begin()
    assert ls.ws_behind
    count_ws_event(r, P, "ws_recv")
    ls.begin()
    assert not ls.ws_behind
    count_ws_event(r, P, "ws_sent")
    old = ls_mod.WS_BEHIND_MAX_SEC
    ls_mod.WS_BEHIND_MAX_SEC = 0.0  # a lost event: the hold is bounded
    try:
        ls.begin()
        assert not ls.ws_behind
    finally:
        ls_mod.WS_BEHIND_MAX_SEC = old
    _alive(r, "user_stream")
    c = Conductor(r, P, "", wait_sec=0.2)
    c.tick(4000)
    assert c.settle(0, 4000) == ["user_stream"]
    assert c.lagging(0) == []  # the lost event is written off: the next points do not wait for it again
