"""`python -m services.signal_ingest` as a real subprocess against a real redis-server and a real log file."""
from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
import uuid
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import msgspec
import pytest
import redis

try:
    from tests.redis_helpers import free_port, redis_server, user_url, wait_until
except ImportError:  # tests/ is not a package
    from redis_helpers import free_port, redis_server, user_url, wait_until  # type: ignore[no-redef]

from shared.domain.peak import dedup_fingerprint

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


def now_iso(offset_sec: float = 0.0) -> str:
    return datetime.fromtimestamp(time.time() + offset_sec, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def peak(price: object, *, ts: str = "2025-01-13T20:00:12Z", kind: str = "long", **extra: object) -> bytes:
    d = {"ts": ts, "action": "PEAK", "source": "DeltaScout", "kind": kind, "price": price, "delta": 1.5,
         "vol": 2.5, "imb": 0.5, **extra}
    return json.dumps(d).encode() + b"\n"


def append(p: Path, data: bytes) -> None:
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


class Svc:
    """The service as a subprocess; its JSON log (stderr) goes to a file we can read as events."""

    def __init__(self, url: str, log: Path, workdir: Path, **env: str) -> None:
        self.url, self.log, self.workdir = url, log, workdir
        self.prefix = f"t{uuid.uuid4().hex[:10]}:"
        # the service connects as its own ACL user; the test reads and writes as the admin
        self.env = {"DELTASCOUT_LOG": str(log), "REDIS_URL": user_url(url, "signal_ingest", self.prefix),
                    "EXEC_PREFIX": self.prefix,
                    "MAX_PEAK_AGE_SEC": str(10**9), **env}
        self.stderr = workdir / f"ingest-{self.prefix[:-1]}.jsonl"
        self.proc: subprocess.Popen[bytes] | None = None
        self.r = redis.Redis.from_url(url)

    def key(self, name: str) -> str:
        return self.prefix + name

    def start(self, wait: bool = True, **env: str) -> None:
        self.env.update(env)
        before = self.count("started")
        with open(self.stderr, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.signal_ingest"], cwd=ROOT,
                                         env={**os.environ, **self.env}, stdout=subprocess.DEVNULL, stderr=err)
        if wait:
            wait_until(lambda: self.count("started") > before or self._died(), timeout=15, what="service started")
            assert not self._died(), self.stderr.read_text()[-3000:]

    def _died(self) -> bool:
        return self.proc is not None and self.proc.poll() is not None

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        if not self.stderr.exists():
            return []
        out = []
        for raw in self.stderr.read_bytes().splitlines():
            try:
                e = json.loads(raw)
            except ValueError:
                continue
            if name is None or e.get("event") == name:
                out.append(e)
        return out

    def count(self, name: str) -> int:
        return len(self.events(name))

    def stream(self, name: str) -> list[dict[str, Any]]:
        return [msgspec.json.decode(f[b"data"]) for _id, f in self.r.xrange(self.key(name))]

    def signals(self) -> list[dict[str, Any]]:
        return self.stream("signals")

    def rejects(self) -> list[dict[str, Any]]:
        return self.stream("rejects")

    def total(self) -> int:
        return int(self.r.xlen(self.key("signals"))) + int(self.r.xlen(self.key("rejects")))

    def offset(self) -> dict[str, str]:
        return {k.decode(): v.decode() for k, v in self.r.hgetall(self.key("ingest:offset")).items()}

    def wait_total(self, n: int, timeout: float = 10) -> None:
        wait_until(lambda: self.total() >= n, timeout=timeout, what=f"{n} published entries (have {self.total()})")
        assert self.total() == n


@pytest.fixture
def svc(redis_url: str, tmp_path: Path) -> Iterator[Svc]:
    log = tmp_path / "deltascout.log"
    log.write_bytes(b"")
    s = Svc(redis_url, log, tmp_path)
    yield s
    s.stop()


def test_append_becomes_a_signal_with_offset_and_heartbeat(svc: Svc) -> None:
    svc.start()
    line = peak(95000.04)
    append(svc.log, line)
    svc.wait_total(1)
    [s] = svc.signals()
    assert s["key"] == "PEAK|2025-01-13T20:00|long|95000.0" and s["price"] == "95000.04" and s["offset"] == 0
    assert s["kind"] == "long" and s["delta"] == "1.5" and s["source"] == "DeltaScout"
    off = svc.offset()
    assert off == {"inode": str(svc.log.stat().st_ino), "offset": str(len(line)), "path": str(svc.log),
                   "fingerprint": dedup_fingerprint(1), "head_len": str(len(line)),
                   "head": hashlib.blake2b(line, digest_size=8).hexdigest(), "tail_len": "128",
                   "tail": hashlib.blake2b(line[-128:], digest_size=8).hexdigest(), "draining": "[]"}
    hb = wait_until(lambda: svc.r.get(svc.key("hb:signal_ingest")), what="heartbeat")
    assert json.loads(hb)["pid"] == svc.proc.pid  # type: ignore[union-attr]
    assert 0 < svc.r.ttl(svc.key("hb:signal_ingest")) <= 10
    assert svc.r.zrange(svc.key("ingest:seen"), 0, -1) == [s["key"].encode()]
    [ev] = svc.events("signal")
    assert ev["key"] == s["key"] and ev["offset"] == 0


def test_first_start_bootstraps_from_the_tail_and_never_trades_history(svc: Svc) -> None:
    history = b"".join(peak(1000 + i) for i in range(100)) + b"garbage\n"
    append(svc.log, history)
    svc.start(TAIL_LINES="80")
    [boot] = svc.events("bootstrap")
    assert boot["offset"] == len(history) and boot["seeded_keys"] == 79   # the last 80 lines hold 1 garbage line
    assert svc.r.zcard(svc.key("ingest:seen")) == 79
    append(svc.log, peak(1099) + peak(1005) + peak(2000))   # in the tail / before the tail / new
    svc.wait_total(3)
    assert [s["offset"] for s in svc.signals()] == [len(history) + len(peak(1099)),
                                                    len(history) + len(peak(1099)) * 2]
    assert [(r["reason"], r["offset"]) for r in svc.rejects()] == [("duplicate", len(history))]


def test_rotation_then_truncation_continue_from_the_start_of_the_new_content(svc: Svc) -> None:
    svc.start()
    append(svc.log, peak(1))
    svc.wait_total(1)
    rotated = svc.log.with_name("deltascout.log.1")
    os.rename(svc.log, rotated)
    append(rotated, peak(2))                      # the writer still had the old file open
    svc.wait_total(2)
    append(svc.log, peak(3))                      # new file at the path
    svc.wait_total(3)
    append(svc.log, peak(4))
    svc.wait_total(4)
    with open(svc.log, "r+b") as f:               # truncated in place (copytruncate)
        f.truncate(0)
    append(svc.log, peak(5))
    svc.wait_total(5)
    sigs = svc.signals()
    assert [s["price"] for s in sigs] == ["1", "2", "3", "4", "5"]
    assert [s["offset"] for s in sigs] == [0, len(peak(1)), 0, len(peak(3)), 0]
    assert svc.count("log_rotated") == 1
    assert svc.count("log_truncated") + svc.count("log_rewritten") == 1
    assert svc.offset()["offset"] == str(len(peak(5)))


def _two_steps_later(svc: Svc) -> None:
    """Wait (on a condition) until the service has certainly run its loop after now: two fresh heartbeats."""
    t0 = time.time()
    seen: set[float] = set()

    def fresh() -> bool:
        raw = svc.r.get(svc.key("hb:signal_ingest"))
        if raw and json.loads(raw)["ts"] > t0:
            seen.add(json.loads(raw)["ts"])
        return len(seen) >= 2
    wait_until(fresh, timeout=10, what="two heartbeats")


def test_partial_line_waits_for_its_newline(svc: Svc) -> None:
    svc.start()
    line = peak(777)
    append(svc.log, line[:40])
    _two_steps_later(svc)
    assert svc.total() == 0 and svc.offset()["offset"] == "0"
    append(svc.log, line[40:-1])
    _two_steps_later(svc)
    assert svc.total() == 0
    append(svc.log, b"\n")
    svc.wait_total(1)
    assert svc.signals()[0]["offset"] == 0 and svc.signals()[0]["price"] == "777"


def test_garbage_huge_stale_and_duplicate_lines_are_rejected_with_reasons(svc: Svc) -> None:
    svc.start(MAX_LINE_BYTES="1000", MAX_PEAK_AGE_SEC="600")
    good = peak(100, ts=now_iso())
    lines = [
        (good, None),
        (b"garbage \x00\xff\n", "bad_json"),
        (b"{" + b"x" * 3_000_000 + b"}\n", "too_long"),
        (peak(101, ts=now_iso(), source="Elsewhere"), "wrong_source"),
        (json.dumps({"action": "HELLO"}).encode() + b"\n", "not_peak"),
        (peak(102, ts=now_iso(), kind="flat"), "schema"),
        (peak(-5, ts=now_iso()), "bad_price"),
        (peak(103, ts="not a time"), "bad_ts"),
        (peak(104, ts=now_iso(-3600)), "stale"),
        (peak(100, ts=now_iso()), "duplicate"),
        (b"\n", "bad_json"),
        (peak(105, ts=now_iso()), None),
    ]
    append(svc.log, b"".join(ln for ln, _ in lines))
    svc.wait_total(len(lines))
    offsets, pos = [], 0
    for ln, _ in lines:
        offsets.append(pos)
        pos += len(ln)
    rejects = svc.rejects()
    assert [(r["offset"], r["reason"]) for r in rejects] == [(o, why) for o, (_, why) in zip(offsets, lines) if why]
    assert [s["offset"] for s in svc.signals()] == [offsets[0], offsets[-1]]
    huge = rejects[1]
    assert huge["reason"] == "too_long" and len(huge["line"]) == 512 and "3000002" in huge["detail"]
    assert all(len(r["line"]) <= 512 for r in rejects)
    assert svc.offset()["offset"] == str(pos)
    assert {e["reason"] for e in svc.events("reject")} == {why for _, why in lines if why}


def test_missing_log_is_waited_for_then_read_from_its_start(svc: Svc) -> None:
    svc.log.unlink()
    svc.start()
    wait_until(lambda: svc.count("log_missing") == 1, what="log_missing")
    _two_steps_later(svc)
    assert svc.count("log_missing") == 1 and svc.proc.poll() is None  # type: ignore[union-attr]
    append(svc.log, peak(1) + peak(2))
    svc.wait_total(2)
    assert [s["offset"] for s in svc.signals()] == [0, len(peak(1))]


def test_dedup_scheme_change_reseeds_without_moving_the_offset(svc: Svc) -> None:
    svc.start()
    append(svc.log, peak(95000.04))
    svc.wait_total(1)
    svc.stop()
    offset_before = svc.offset()["offset"]
    svc.start(DEDUP_PRICE_DECIMALS="0")
    [warn] = svc.events("dedup_fingerprint_changed")
    assert warn["level"] == "WARN" and warn["new"] == dedup_fingerprint(0)
    assert svc.offset()["offset"] == offset_before and svc.offset()["fingerprint"] == dedup_fingerprint(0)
    assert svc.r.zrange(svc.key("ingest:seen"), 0, -1) == [b"PEAK|2025-01-13T20:00|long|95000"]
    append(svc.log, peak(94999.6) + peak(95001))
    svc.wait_total(3)
    assert [r["reason"] for r in svc.rejects()] == ["duplicate"]
    assert svc.signals()[-1]["key"] == "PEAK|2025-01-13T20:00|long|95001"


def test_redis_loss_backs_off_reconnects_and_continues(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "deltascout.log"
    log.write_bytes(b"")
    with redis_server(port=port) as url:
        svc = Svc(url, log, tmp_path)
        svc.start()
        append(log, peak(1))
        svc.wait_total(1)
        prefix = svc.prefix
    # here redis is gone; it comes back empty (no persistence) on the same port
    try:
        wait_until(lambda: svc.count("redis_unavailable") >= 1, what="redis_unavailable")
        append(log, peak(2))                       # written while Redis is down
        with redis_server(port=port) as url2:
            assert url2 == svc.url
            user_url(url2, "signal_ingest", svc.prefix)  # the users come back with the server (the aclfile)
            svc.r = redis.Redis.from_url(url2)
            wait_until(lambda: svc.total() >= 1, timeout=15, what="publication after reconnect")
            append(log, peak(3))
            svc.wait_total(2)
            assert [s["price"] for s in svc.signals()] == ["2", "3"]
            assert svc.count("state_restored_from_memory") == 1 and svc.count("redis_reconnected") == 1
            assert svc.prefix == prefix and svc.proc.poll() is None  # type: ignore[union-attr]
            svc.stop()
    finally:
        svc.stop()


def test_kill9_at_random_moments_publishes_every_line_exactly_once_in_order(svc: Svc) -> None:
    rnd = random.Random(1234)
    n = 600
    lines: list[bytes] = []
    expected: list[str | None] = []   # None = signal, else the reject reason
    keys_seen: list[int] = []
    for i in range(n):
        x = rnd.random()
        if x < 0.1:
            lines.append(b"not json %d\n" % i)
            expected.append("bad_json")
        elif x < 0.2 and keys_seen:
            lines.append(peak(rnd.choice(keys_seen), delta=i))
            expected.append("duplicate")
        else:
            lines.append(peak(10_000 + i))
            keys_seen.append(10_000 + i)
            expected.append(None)
    offsets, pos = [], 0
    for ln in lines:
        offsets.append(pos)
        pos += len(ln)

    svc.start()
    done = threading.Event()

    def writer() -> None:
        wr = random.Random(99)
        for ln in lines:
            append(svc.log, ln)
            time.sleep(wr.random() * 0.004)
        done.set()

    th = threading.Thread(target=writer)
    th.start()
    kills = 0
    before = svc.count("started") - 1
    try:
        while not done.is_set() or kills < 12:
            # Pacing of the chaos, not synchronisation: kill during start-up, or just after it, while the
            # backlog written during the downtime is being published.
            if rnd.random() < 0.6:
                wait_until(lambda: svc.count("started") > before or svc.proc.poll() is not None,  # type: ignore
                           timeout=15, what="restart")
                time.sleep(rnd.uniform(0, 0.01))
            else:
                time.sleep(rnd.uniform(0.01, 0.2))
            svc.kill9()
            kills += 1
            before = svc.count("started")
            svc.start(wait=False)
    finally:
        th.join()
    wait_until(lambda: svc.offset().get("offset") == str(pos), timeout=30, what="all lines consumed")
    sigs, rejs = svc.signals(), svc.rejects()
    assert [s["offset"] for s in sigs] == [o for o, e in zip(offsets, expected) if e is None]
    assert [(r["offset"], r["reason"]) for r in rejs] == [(o, e) for o, e in zip(offsets, expected) if e]
    assert len(sigs) + len(rejs) == n
    assert kills >= 5 and svc.count("started") >= 2


# ---- issue 15: rewrites in place, a writer holding the rotated file, crashes at any line -----------------------

def _copytruncate_and_write(p: Path, data: bytes) -> None:
    """copytruncate as loggers meet it: truncate and write the new lines in one open, before ingest looks."""
    with open(p, "r+b") as f:
        f.truncate(0)
        f.write(data)


def _prices(svc: Svc) -> list[str]:
    return [s["price"] for s in svc.signals()]


def test_copytruncate_then_new_lines_at_once_publishes_every_new_line(svc: Svc) -> None:
    svc.start()
    old = b"".join(peak(10_000 + i) for i in range(12))     # all lines the same length
    append(svc.log, old)
    svc.wait_total(12)
    new = b"".join(peak(20_000 + i) for i in range(15))
    _copytruncate_and_write(svc.log, new)
    svc.wait_total(27)
    assert _prices(svc)[12:] == [str(20_000 + i) for i in range(15)]
    assert [s["offset"] for s in svc.signals()[12:]] == [i * len(peak(20_000)) for i in range(15)]
    # the rewrite is seen as a truncation if ingest looked between the truncate and the write
    assert svc.count("log_rewritten") + svc.count("log_truncated") == 1
    assert [e for e in svc.stream("events") if e["kind"] in ("log_rewritten", "log_truncated")]


def test_copytruncate_while_stopped_is_read_from_zero_after_restart(svc: Svc) -> None:
    svc.start()
    append(svc.log, b"".join(peak(10_000 + i) for i in range(12)))
    svc.wait_total(12)
    svc.stop()
    _copytruncate_and_write(svc.log, b"".join(peak(20_000 + i) for i in range(15)))
    svc.start()
    svc.wait_total(27)
    assert _prices(svc)[12:] == [str(20_000 + i) for i in range(15)]


def test_a_writer_still_holding_the_rotated_file_loses_no_line(svc: Svc) -> None:
    svc.start(LOG_ROTATE_IDLE_SEC="1")
    fd = os.open(svc.log, os.O_WRONLY | os.O_APPEND)          # the writer's own open file
    try:
        os.write(fd, peak(1))
        svc.wait_total(1)
        os.rename(svc.log, svc.log.with_name("deltascout.log.1"))
        append(svc.log, peak(2))                              # the new file at the path, read at once
        svc.wait_total(2)
        os.write(fd, peak(3))                                 # a late line into the renamed file
        svc.wait_total(3)
    finally:
        os.close(fd)
    append(svc.log, peak(4))
    svc.wait_total(4)
    assert _prices(svc) == ["1", "2", "3", "4"]
    wait_until(lambda: svc.count("log_rotated_closed") == 1, timeout=10, what="the idle rotated file closed")
    assert svc.offset()["draining"] == "[]" or svc.count("log_rotated_closed") == 1


def test_deleted_log_is_an_event_and_one_alert_then_its_return_a_recovery(svc: Svc) -> None:
    from shared.adapters.notify import queue as notify_queue
    svc.start(N8N_WEBHOOK_URL="http://127.0.0.1:9/hook")
    append(svc.log, peak(1))
    svc.wait_total(1)
    svc.log.unlink()
    wait_until(lambda: [e for e in svc.stream("events") if e["kind"] == "log_missing"], what="log_missing event")
    wait_until(lambda: notify_queue(svc.r, svc.prefix).jobs, what="alert queued")
    jobs = notify_queue(svc.r, svc.prefix).jobs
    assert [j.args[0]["event"] for j in jobs] == ["ingest_log_missing"] and "deleted" in jobs[0].args[0]["message"]
    append(svc.log, peak(2))
    svc.wait_total(2)
    wait_until(lambda: len(notify_queue(svc.r, svc.prefix).jobs) == 2, what="recovery queued")
    assert notify_queue(svc.r, svc.prefix).jobs[1].args[0]["event"] == "ingest_log_missing.recovered"


def test_kill9_across_copytruncate_and_rotation_every_line_exactly_once(svc: Svc) -> None:
    """SIGKILL at random moments while the log is rewritten in place (after ingest read it) and rotated with the
    writer still appending to the renamed file: every line written is published exactly once."""
    rnd = random.Random(4321)
    svc.start(LOG_ROTATE_IDLE_SEC="2")
    written: list[int] = []
    state = {"kills": 0}

    def chaos(k: int) -> None:
        for _ in range(k):
            time.sleep(rnd.uniform(0.0, 0.05))  # pacing of the chaos, not synchronisation
            svc.kill9()
            state["kills"] += 1
            svc.start(wait=rnd.random() < 0.5)

    def write(target: Path | int, lo: int, n: int) -> None:
        for i in range(lo, lo + n):
            if isinstance(target, int):
                os.write(target, peak(i))
            else:
                append(target, peak(i))
            written.append(i)
            if rnd.random() < 0.1:
                chaos(1)

    write(svc.log, 10_000, 60)
    wait_until(lambda: svc.offset().get("offset") == str(svc.log.stat().st_size), timeout=30, what="all read")
    _copytruncate_and_write(svc.log, b"".join(peak(i) for i in range(20_000, 20_030)))
    written += range(20_000, 20_030)
    chaos(2)
    fd = os.open(svc.log, os.O_WRONLY | os.O_APPEND)
    write(fd, 30_000, 20)
    os.rename(svc.log, svc.log.with_name("deltascout.log.1"))
    svc.log.write_bytes(b"")
    for j in range(20):                                       # both files grow, the old one by its late writer
        write(fd, 40_000 + j, 1)
        write(svc.log, 50_000 + j, 1)
    os.close(fd)
    chaos(2)
    wait_until(lambda: svc.total() >= len(written), timeout=60, what=f"{len(written)} lines published")
    svc.stop()
    got = sorted(int(p) for p in _prices(svc))
    assert got == sorted(written), (len(got), len(written))
    assert svc.rejects() == [] and state["kills"] >= 4
