"""Issue 21: the halt flag travels with the state snapshot (a Redis that comes back empty stays halted), and at
start the newer of Redis' state and the snapshot file wins by `version`. Real processes on a real redis-server."""
from __future__ import annotations

import signal as sig

import msgspec
import redis

from shared.domain.position import State, decode_state, encode_state
from tests.test_position_engine_support import make_stack_fixture  # noqa: F401  (fixture make_stack)


def _snapshot(s) -> State:
    """The snapshot file's state; an empty one while the file is not written yet (a wait polls again)."""
    try:
        return decode_state(open(s.env["STATE_FN"], "rb").read())
    except FileNotFoundError:
        return State()


def _redis_comes_back_empty(s) -> None:
    """Redis restarted without its data: its clients lose their connections (the engine is restarted with it)."""
    s.kill("position_engine", sig.SIGTERM)
    s.r.flushdb()
    s.admin("/advance", {"points": 1})              # the replay clock is published again
    s.start("position_engine")
    s.wait_ready()


def test_a_redis_that_comes_back_empty_keeps_the_halt(make_stack):
    s = make_stack().up()
    s.command("halt", "news at 14:30")
    s.wait_event("halt_set", reason="news at 14:30")
    snap = s.wait(lambda: _snapshot(s).halt, 10, "halt in the snapshot")
    assert snap["by"] == "pytest" and snap["reason"] == "news at 14:30"
    _redis_comes_back_empty(s)
    assert s.ignored(s.signal("long", s.last())) == "halted"
    assert s.r.exists(f"{s.prefix}halt") and s.state().halt["reason"] == "news at 14:30"
    s.command("resume")
    s.wait_event("halt_cleared")
    s.wait(lambda: _snapshot(s).halt is None, 10, "halt cleared in the snapshot")
    _redis_comes_back_empty(s)
    key = s.signal("long", s.last() - 50)
    s.wait_event("entry_planned", signal_key=key)


def test_a_halt_set_by_another_process_reaches_the_snapshot(make_stack):
    """The watchdog's I13 kill switch writes only the flag: the engine copies it into the state."""
    s = make_stack().up()
    s.r.set(f"{s.prefix}halt", b'{"by":"watchdog","check":"I13","reason":"debt"}')
    assert s.ignored(s.signal("long", s.last())) == "halted"
    assert s.wait(lambda: _snapshot(s).halt, 10, "halt in the snapshot")["by"] == "watchdog"


def test_a_newer_snapshot_wins_over_an_older_redis_state_at_start(make_stack):
    s = make_stack().up()
    s.signal("long", s.last() - 50)                 # a LIMIT resting below the market
    st = s.wait_status("OPEN")
    tk = st.position.trade_key
    s.wait(lambda: _snapshot(s).version == s.state().version, 10, "snapshot in step")
    s.kill("position_engine", sig.SIGTERM)
    # Redis comes back from an old RDB: a state older than the snapshot, without the trade
    s.r.set(f"{s.prefix}state", encode_state(State(version=1)))
    s.start("position_engine")
    s.wait_ready(after=1)
    ev = s.wait_event("state_restored_from_snapshot")
    assert ev.data["state_version"] >= st.version
    now = s.state()
    assert now.position is not None and now.position.trade_key == tk and now.position.status == "OPEN"
    assert len(s.entry_orders()) == 1 and s.events("entry_orphan") == []


def test_redis_newer_than_the_snapshot_wins(make_stack):
    s = make_stack().up()
    s.signal("long", s.last() - 50)
    tk = s.wait_status("OPEN").position.trade_key
    s.kill("position_engine", sig.SIGTERM)
    old = _snapshot(s)
    cur = s.state()
    # the file is older (a crash between the Redis write and the file write): Redis' copy goes to the file
    open(s.env["STATE_FN"], "wb").write(encode_state(State(version=1)))
    s.start("position_engine")
    s.wait_ready(after=1)
    assert s.events("state_restored_from_snapshot") == []
    assert _snapshot(s).version >= cur.version >= old.version and _snapshot(s).position.trade_key == tk


def test_a_state_restored_by_another_process_without_the_flag_is_halted_again_at_start(make_stack):
    """Only position_engine writes the flag back (the others may not write it under the ACL): when another
    process restored the state from the snapshot first, the engine sets the flag again at start."""
    s = make_stack().up()
    s.command("halt", "maintenance")
    s.wait_event("halt_set")
    s.wait(lambda: _snapshot(s).halt, 10, "halt in the snapshot")
    s.kill("position_engine", sig.SIGTERM)
    s.r.flushdb()
    s.admin("/advance", {"points": 1})
    assert s.store().load().halt is not None and not s.r.exists(f"{s.prefix}halt")   # restored as exit_manager would
    s.start("position_engine")
    s.wait_ready()
    assert s.wait_event("halt_restored").data["halt"]["reason"] == "maintenance"
    assert s.r.exists(f"{s.prefix}halt")
    assert s.ignored(s.signal("long", s.last())) == "halted"


def test_a_halt_flag_set_by_the_watchdog_reaches_the_snapshot_without_a_signal(make_stack):
    """The watchdog's I13 kill switch may SET only the flag (ACL): the engine copies it into the state while it
    runs, so the snapshot keeps it and a Redis that comes back empty is still halted, with no signal in between."""
    s = make_stack().up()
    wd = redis.Redis.from_url(s.env_for("watchdog")["REDIS_URL"])
    wd.set(f"{s.prefix}halt", msgspec.json.encode({"by": "watchdog", "reason": "I13 kill switch", "at": 1.0}))
    s.wait_event("halt_adopted")
    s.wait(lambda: _snapshot(s).halt, 10, "the watchdog's halt in the snapshot")
    assert _snapshot(s).halt["reason"] == "I13 kill switch"
    s.kill("position_engine", sig.SIGTERM)
    s.r.flushdb()
    s.admin("/advance", {"points": 1})   # the market clock is published again
    s.start("position_engine")
    s.wait_ready()
    # the snapshot's copy sets the flag again (at restore, or at start when another process restored it first)
    s.wait(lambda: s.r.exists(f"{s.prefix}halt"), 10, "the halt flag back")
    assert msgspec.json.decode(s.r.get(f"{s.prefix}halt"))["by"] == "watchdog"
    assert s.ignored(s.signal("long", s.last())) == "halted"
