"""Redis adapters on a real redis-server: consumer groups (ack after work, re-claim after a crash), the
state store (optimistic concurrency, atomic snapshot never older, restore when Redis comes back empty)."""
from __future__ import annotations

import threading
from decimal import Decimal
from pathlib import Path


from shared.adapters.redis_streams import GroupConsumer, publish
from shared.adapters.state_store import StateStore, read_snapshot, write_snapshot
from shared.domain.messages import PositionEvent, Signal
from shared.domain.position import State, decode_state, encode_state


def _sig(i: int) -> Signal:
    return Signal(key=f"k{i}", ts=float(i), kind="long", price=Decimal("95000.10"), offset=i)


def test_unacked_entries_come_back_to_a_restarted_consumer(r):
    for i in range(3):
        publish(r, "s", _sig(i), 1000)
    c1 = GroupConsumer(r, "s", "g", "c1")
    got = c1.read(block_ms=None, count=2)
    assert [e.msg.key for e in got] == ["k0", "k1"]
    c1.ack(got[0].id)
    # c1 "crashes" before acking k1; the same consumer name restarts and gets its backlog first.
    c1b = GroupConsumer(r, "s", "g", "c1")
    again = c1b.read(block_ms=None, count=10)
    assert [e.msg.key for e in again] == ["k1"]
    c1b.ack(again[0].id)
    assert [e.msg.key for e in c1b.read(block_ms=None, count=10)] == ["k2"]


def test_entries_of_a_dead_consumer_are_claimed_after_idle_time(r):
    publish(r, "s2", _sig(7), 1000)
    dead = GroupConsumer(r, "s2", "g", "dead")
    assert len(dead.read(block_ms=None)) == 1
    alive = GroupConsumer(r, "s2", "g", "alive", claim_idle_ms=0)
    claimed = alive.read(block_ms=None)
    assert [e.msg.key for e in claimed] == ["k7"]


def test_undecodable_entry_is_reported_not_fatal(r):
    r.xadd("s3", {"type": "signal", "data": b"{not json"})
    c = GroupConsumer(r, "s3", "g", "c")
    (e,) = c.read(block_ms=None)
    assert e.msg is None and "undecodable" in e.error


def test_stream_entries_are_readable_by_a_person(r):
    publish(r, "s4", PositionEvent(kind="CLOSED", trade_key="tk", at=1.0), 1000)
    (_id, fields), = r.xrange("s4")
    assert fields[b"type"] == b"position" and b'"trade_key":"tk"' in fields[b"data"]


def test_state_updates_are_serialised_by_optimistic_concurrency(r, tmp_path: Path):
    stores = [StateStore(r, "st", str(tmp_path / "snap.json"), f"p{i}") for i in range(4)]

    def bump(store: StateStore) -> None:
        for _ in range(25):
            store.update(lambda s: (State(**{**_fields(s), "closed_count": s.closed_count + 1}), []))
    threads = [threading.Thread(target=bump, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    st = stores[0].load()
    assert st.closed_count == 100 and st.version == 100
    assert read_snapshot(tmp_path / "snap.json").version == 100


def _fields(s: State) -> dict:
    return {f: getattr(s, f) for f in s.__struct_fields__}


def test_update_appends_events_in_the_same_transaction(r, tmp_path: Path):
    store = StateStore(r, "st2", str(tmp_path / "s.json"), "t")
    store.update(lambda s: (s, [("ev", PositionEvent(kind="ENTRY_FILLED", trade_key="x", at=2.0))]))
    assert r.xlen("ev") == 1 and store.load().version == 1


def test_snapshot_never_goes_back_to_an_older_version(tmp_path: Path):
    path = tmp_path / "snap.json"
    assert write_snapshot(path, State(version=5, closed_count=5))
    assert not write_snapshot(path, State(version=4, closed_count=4))
    assert read_snapshot(path).closed_count == 5
    assert not list(tmp_path.glob("*.tmp"))


def test_state_is_restored_from_the_snapshot_when_redis_comes_back_empty(r, tmp_path: Path):
    store = StateStore(r, "st3", str(tmp_path / "s.json"), "t")
    store.update(lambda s: (State(**{**_fields(s), "cooldown_until": 123.0}), []))
    r.flushdb()  # Redis restarted without its data
    st = store.load()
    assert st.cooldown_until == 123.0 and st.version == 1
    assert decode_state(r.get("st3")).cooldown_until == 123.0


def test_an_older_schema_is_migrated_not_rejected():
    old = b'{"position": null, "cooldown_until": 5.0, "seen_keys": ["a"]}'
    st = decode_state(old)
    assert st.cooldown_until == 5.0 and st.schema == 1
    assert decode_state(encode_state(st)) == st
