"""Property: the in-process pipeline (tailer + parse + dedup + MULTI/EXEC publish against a real Redis), fed a
random interleaving of good, bad and duplicate lines in random write chunks (lines split anywhere) with random
restarts, publishes exactly the good unique lines as signals, in order, and every other line once as a reject."""
from __future__ import annotations

import io
import json
import uuid
from pathlib import Path
from typing import Iterator

import msgspec
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

try:
    from tests.redis_helpers import redis_server
except ImportError:  # tests/ is not a package
    from redis_helpers import redis_server  # type: ignore[no-redef]

from services.signal_ingest.service import Ingestor
from shared.clock import WallClock
from shared.config import Config
from shared.jsonlog import JsonLogger


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


def good(price_idx: int, kind: str, variant: int) -> bytes:
    # same (price_idx, kind) => same dedup key, whatever the variant (seconds, delta)
    return json.dumps({"ts": f"2025-01-13T20:00:{variant % 60:02d}Z", "action": "PEAK", "source": "DeltaScout",
                       "kind": kind, "price": 1000 + price_idx + 0.01 * (variant % 4), "delta": variant}).encode()


BAD = [
    (b"garbage", "bad_json"),
    (b"", "bad_json"),
    (b"[1,2,3]", "schema"),
    (b'{"action":"TROUGH","ts":"2025-01-13T20:00:00Z"}', "not_peak"),
    (b'{"ts":"2025-01-13T20:00:00Z","action":"PEAK","source":"X","kind":"long","price":1}', "wrong_source"),
    (b'{"ts":"2025-01-13T20:00:00Z","action":"PEAK","source":"DeltaScout","kind":"long","price":0}', "bad_price"),
    (b'{"ts":"soon","action":"PEAK","source":"DeltaScout","kind":"long","price":1}', "bad_ts"),
    (b'{"ts":"1999-01-01T00:00:00Z","action":"PEAK","source":"DeltaScout","kind":"long","price":1}', "stale"),
    (b'{"pad":"' + b"y" * 300 + b'"}', "too_long"),
]

line_st = st.one_of(
    st.tuples(st.just("good"), st.integers(0, 5), st.sampled_from(["long", "short"]), st.integers(0, 200)),
    st.tuples(st.just("bad"), st.integers(0, len(BAD) - 1), st.just(""), st.just(0)),
)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(line_st, min_size=1, max_size=40),
       cuts=st.lists(st.integers(1, 400), min_size=1, max_size=12),
       restarts=st.sets(st.integers(0, 12), max_size=4),
       seen_max=st.sampled_from([3, 500]),
       tx_max=st.sampled_from([1, 4, 1000]))
def test_random_interleavings_publish_exactly_the_good_unique_lines_in_order(
        redis_url: str, tmp_path: Path, lines: list, cuts: list[int], restarts: set[int], seen_max: int,
        tx_max: int) -> None:
    log = tmp_path / f"{uuid.uuid4().hex}.log"
    log.write_bytes(b"")
    prefix = f"p{uuid.uuid4().hex[:10]}:"
    cfg = Config(DELTASCOUT_LOG=str(log), REDIS_URL=redis_url, EXEC_PREFIX=prefix, SEEN_KEYS_MAX=seen_max,
                 MAX_PEAK_AGE_SEC=10**8, MAX_LINE_BYTES=200, TAIL_LINES=80)
    r = redis.Redis.from_url(redis_url)

    # the model
    data = b""
    expected_signals: list[int] = []
    expected_rejects: list[tuple[int, str]] = []
    seen: list[str] = []
    for kind_, a, b, c in lines:
        off = len(data)
        if kind_ == "good":
            raw = good(a, b, c)
            key = (a, b)
            if key in [k for k in seen]:
                expected_rejects.append((off, "duplicate"))
            else:
                expected_signals.append(off)
                seen.append(key)  # type: ignore[arg-type]
                del seen[:-seen_max]
        else:
            raw, why = BAD[a]
            expected_rejects.append((off, why))
        data += raw + b"\n"

    def new_ingestor() -> Ingestor:
        ing = Ingestor(cfg, r, JsonLogger("signal_ingest", io.StringIO()), WallClock(), use_inotify=False,
                       tx_max_lines=tx_max)
        ing.start()
        return ing

    ing = new_ingestor()
    pos, i = 0, 0
    while pos < len(data):
        n = cuts[i % len(cuts)]
        with open(log, "ab") as f:
            f.write(data[pos:pos + n])
        pos += n
        ing.step()
        if i in restarts:          # a restart between writes: state comes back from Redis only
            ing.close_tailer()
            ing = new_ingestor()
        i += 1
    for _ in range(3):
        ing.step()
    ing.close_tailer()

    def stream(name: str) -> list[dict]:
        return [msgspec.json.decode(f[b"data"]) for _id, f in r.xrange(prefix + name)]
    assert [s["offset"] for s in stream("signals")] == expected_signals
    assert [(x["offset"], x["reason"]) for x in stream("rejects")] == expected_rejects
    assert int(r.hget(prefix + "ingest:offset", "offset")) == len(data)
    assert r.zcard(prefix + "ingest:seen") == min(seen_max, len(expected_signals))
    r.close()


def test_failed_transaction_leaves_nothing_behind_and_restores_the_seen_mirror(redis_url: str, tmp_path: Path) -> None:
    from services.signal_ingest.service import Superseded
    log = tmp_path / "x.log"
    log.write_bytes(b"")
    prefix = f"p{uuid.uuid4().hex[:10]}:"
    cfg = Config(DELTASCOUT_LOG=str(log), REDIS_URL=redis_url, EXEC_PREFIX=prefix, SEEN_KEYS_MAX=3,
                 MAX_PEAK_AGE_SEC=10**8)
    r = redis.Redis.from_url(redis_url)
    ing = Ingestor(cfg, r, JsonLogger("signal_ingest", io.StringIO()), WallClock(), use_inotify=False)
    ing.start()
    with open(log, "ab") as f:
        f.write(b"".join(good(i, "long", 0) + b"\n" for i in range(3)))
    assert ing.step() == 3
    mirror, offset = list(ing.seen.items()), r.hgetall(prefix + "ingest:offset")
    r.incr(prefix + "ingest:epoch")            # another instance took over
    with open(log, "ab") as f:                 # 5 new keys, then one of the old ones again: evictions galore
        f.write(b"".join(good(i, "short", 0) + b"\n" for i in range(5)) + good(0, "long", 1) + b"\n")
    with pytest.raises(Superseded):
        ing.step()
    assert list(ing.seen.items()) == mirror
    assert r.hgetall(prefix + "ingest:offset") == offset
    assert r.xlen(prefix + "signals") == 3 and not r.exists(prefix + "rejects")
    ing.close_tailer()
    r.close()


def test_redis_state_behind_our_commits_is_restored_not_republished(redis_url: str, tmp_path: Path) -> None:
    log = tmp_path / "x.log"
    log.write_bytes(b"")
    prefix = f"p{uuid.uuid4().hex[:10]}:"
    cfg = Config(DELTASCOUT_LOG=str(log), REDIS_URL=redis_url, EXEC_PREFIX=prefix, MAX_PEAK_AGE_SEC=10**8)
    r = redis.Redis.from_url(redis_url)
    out = io.StringIO()
    ing = Ingestor(cfg, r, JsonLogger("signal_ingest", out), WallClock(), use_inotify=False)
    ing.start()
    data = b"".join(good(i, "long", 0) + b"\n" for i in range(4))
    with open(log, "ab") as f:
        f.write(data)
    assert ing.step() == 4
    r.hset(prefix + "ingest:offset", "offset", 0)   # Redis came back from an older snapshot
    r.delete(prefix + "ingest:seen")
    ing.start()                                      # what run() does after a reconnect
    assert '"redis_state_behind"' in out.getvalue()
    assert r.hget(prefix + "ingest:offset", "offset") == str(len(data)).encode()
    assert r.zcard(prefix + "ingest:seen") == 4
    assert ing.step() == 0 and r.xlen(prefix + "signals") == 4
    ing.close_tailer()
    r.close()


@given(st.binary(max_size=300), st.sampled_from(["signal", "reject"]))
def test_hand_packed_xadd_is_the_protocol_encoding(data: bytes, tag: str) -> None:
    from services.signal_ingest.service import _resp, _xadd
    assert _xadd(b"exec:signals", tag, data) == _resp(b"XADD", b"exec:signals", b"*", b"type", tag.encode(),
                                                       b"data", data)
    assert _resp(b"GET", b"k") == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
