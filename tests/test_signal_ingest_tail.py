"""The log tailer on real files: complete lines only, over-long lines, truncation, rotation, inotify wake-up,
and reading the tail backwards."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from shared.adapters.log_tail import PREFIX_BYTES, FilePos, LogTailer, line_fingerprint, read_tail_lines
from tests.redis_helpers import wait_until


def append(p: Path, data: bytes) -> None:
    with open(p, "ab") as f:
        f.write(data)


def lines_of(t: LogTailer) -> list[tuple[int, bytes, str]]:
    return [(ln.offset, ln.data, ln.status) for ln in t.read_lines()]


@pytest.fixture
def log(tmp_path: Path) -> Path:
    p = tmp_path / "deltascout.log"
    p.write_bytes(b"")
    return p


def test_complete_lines_with_offsets_and_partial_waits(log: Path) -> None:
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0)
    append(log, b"one\ntwo\nthr")
    assert lines_of(t) == [(0, b"one", ""), (4, b"two", "")]
    assert t.position == (log.stat().st_ino, 8)
    assert lines_of(t) == []                 # "thr" waits for its newline
    append(log, b"ee")
    assert lines_of(t) == []
    append(log, b"\n")
    got = t.read_lines()
    assert [(ln.offset, ln.end, ln.data) for ln in got] == [(8, 14, b"three")]
    assert t.position[1] == 14
    t.close()


def test_start_at_offset_reads_only_new_bytes(log: Path) -> None:
    append(log, b"old1\nold2\n")
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=5)
    assert lines_of(t) == [(5, b"old2", "")]
    t.close()


def test_overlong_line_is_consumed_to_its_newline_without_buffering(log: Path) -> None:
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0, max_line_bytes=100, chunk_bytes=4096)
    append(log, b"ok\n")
    assert lines_of(t) == [(0, b"ok", "")]
    for _ in range(50):                       # 5 MB without newline, delivered in pieces
        append(log, b"x" * 100_000)
        assert t.read_lines() == []
        assert len(t._cur.buf) <= 100         # bounded memory: nothing of it is kept beyond the cap
    append(log, b"\nnext\n")
    got = t.read_lines()
    assert [(ln.offset, ln.status, ln.length) for ln in got] == [(3, "too_long", 5_000_000), (5_000_004, "", 4)]
    assert got[0].data == b"x" * PREFIX_BYTES
    assert got[1].data == b"next"
    t.close()


def test_line_of_exactly_the_cap_is_fine(log: Path) -> None:
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0, max_line_bytes=10, chunk_bytes=4)
    append(log, b"0123456789\n01234567890\n")
    assert [ln.status for ln in t.read_lines()] == ["", "too_long"]
    t.close()


def test_truncation_restarts_at_zero(log: Path) -> None:
    events: list[str] = []
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0, on_event=lambda e, **f: events.append(e))
    append(log, b"aaaa\nbbbb\n")
    assert len(t.read_lines()) == 2
    with open(log, "r+b") as f:
        f.truncate(0)
    append(log, b"c\n")
    assert lines_of(t) == [(0, b"c", "")]
    assert "log_truncated" in events
    t.close()


def test_truncate_and_rewrite_past_the_offset_is_detected(log: Path) -> None:
    events: list[str] = []
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0, on_event=lambda e, **f: events.append(e))
    append(log, b"aaaa\n")
    assert len(t.read_lines()) == 1
    with open(log, "r+b") as f:                # copytruncate + a longer first line before we looked
        f.truncate(0)
        f.write(b"new-longer-line\n")
    assert lines_of(t) == [(0, b"new-longer-line", "")]
    assert "log_rewritten" in events
    t.close()


def test_rotation_reads_the_new_file_from_zero_and_the_old_one_until_idle(log: Path, tmp_path: Path) -> None:
    events: list[str] = []
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0, on_event=lambda e, **f: events.append(e),
                  rotate_idle_sec=0.3)
    old_ino = log.stat().st_ino
    append(log, b"a1\n")
    assert lines_of(t) == [(0, b"a1", "")]
    os.rename(log, tmp_path / "deltascout.log.1")
    append(tmp_path / "deltascout.log.1", b"a2\n")         # the writer had the old file still open
    assert lines_of(t) == [(3, b"a2", "")]                 # path missing: keep reading the old file
    append(tmp_path / "deltascout.log.1", b"a3\npart")
    log.write_bytes(b"b1\n")
    got = t.read_lines()
    assert [(ln.inode == old_ino, ln.offset, ln.data, ln.status) for ln in got] == [
        (True, 6, b"a3", ""), (False, 0, b"b1", "")]
    assert t.position == (log.stat().st_ino, 3) and t.draining == [(old_ino, 9)]
    assert "log_rotated" in events
    # idle for rotate_idle_sec: the old file is closed, its unterminated last line reported as partial
    got = wait_until(t.read_lines, 5, 0.05, "the rotated file closed after its idle time")
    assert [(ln.inode == old_ino, ln.offset, ln.data, ln.status) for ln in got] == [(True, 9, b"part", "partial")]
    assert t.draining == [] and "log_rotated_closed" in events
    t.close()


def test_rotated_while_away_finishes_the_old_file_found_by_inode(log: Path, tmp_path: Path) -> None:
    append(log, b"a1\na2\n")
    ino = log.stat().st_ino
    os.rename(log, tmp_path / "deltascout.log.1")
    log.write_bytes(b"b1\n")
    t = LogTailer(str(log), inode=ino, offset=3)
    assert lines_of(t) == [(3, b"a2", ""), (0, b"b1", "")]
    t.close()


def test_replaced_while_away_reads_the_new_file_from_zero(log: Path, tmp_path: Path) -> None:
    append(log, b"a1\na2\n")
    ino = log.stat().st_ino
    new = tmp_path / "new"
    new.write_bytes(b"b1\nb2\n")           # created while the old one exists: a different inode
    os.unlink(log)
    os.rename(new, log)
    assert log.stat().st_ino != ino
    events: list[str] = []
    t = LogTailer(str(log), inode=ino, offset=6, on_event=lambda e, **f: events.append(e))
    assert lines_of(t) == [(0, b"b1", ""), (3, b"b2", "")]
    assert "log_replaced_while_away" in events
    t.close()


def test_missing_file_is_waited_for_and_reported_once(tmp_path: Path) -> None:
    p = tmp_path / "later.log"
    events: list[str] = []
    t = LogTailer(str(p), inode=0, offset=0, on_event=lambda e, **f: events.append(e))
    assert t.read_lines() == [] and t.read_lines() == []
    assert events == ["log_missing"]
    p.write_bytes(b"first\n")
    assert lines_of(t) == [(0, b"first", "")]
    assert events == ["log_missing", "log_appeared"]
    t.close()


def test_inotify_wakes_on_append_within_milliseconds(log: Path) -> None:
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0)
    if not t.using_inotify:
        pytest.skip("inotify unavailable")
    assert t.read_lines() == []
    t0 = time.monotonic()
    assert t.wait(0.0) is False
    append(log, b"x\n")
    assert t.wait(5.0) is True
    assert time.monotonic() - t0 < 1.0
    assert lines_of(t) == [(0, b"x", "")]
    t.close()


def test_poll_fallback_without_inotify(log: Path) -> None:
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0, use_inotify=False, poll_sec=0.01)
    assert not t.using_inotify
    append(log, b"x\n")
    t.wait(1.0)
    assert lines_of(t) == [(0, b"x", "")]
    t.close()


def test_read_tail_lines_backwards(log: Path) -> None:
    body = b"".join(b"line-%05d\n" % i for i in range(5000))
    append(log, body + b"partial-no-newline")
    ino, boundary, lines = read_tail_lines(str(log), 3, block=64)
    assert ino == log.stat().st_ino
    assert boundary == len(body)
    assert lines == [b"line-04997", b"line-04998", b"line-04999"]
    _, b2, lines2 = read_tail_lines(str(log), 2, end=len(b"line-00000\n") * 10, block=7)
    assert b2 == 110 and lines2 == [b"line-00008", b"line-00009"]
    assert read_tail_lines(str(log), 10_000)[2] == [b"line-%05d" % i for i in range(5000)]


def test_read_tail_lines_does_not_scan_a_huge_file(tmp_path: Path) -> None:
    p = tmp_path / "big.log"
    with open(p, "wb") as f:
        f.truncate(4 * 1024**3)             # sparse 4 GB of zeros without a newline
        f.seek(0, os.SEEK_END)
        f.write(b"\na\nb\n")
    t0 = time.monotonic()
    _, boundary, lines = read_tail_lines(str(p), 2)
    assert lines == [b"a", b"b"] and boundary == p.stat().st_size
    _, boundary, lines = read_tail_lines(str(p), 5, max_bytes=1 << 20)   # bounded even when lines are missing
    assert lines[-2:] == [b"a", b"b"]
    assert time.monotonic() - t0 < 5.0


def test_empty_or_newline_free_file(log: Path) -> None:
    assert read_tail_lines(str(log), 5)[1:] == (0, [])
    append(log, b"no newline yet")
    assert read_tail_lines(str(log), 5)[1:] == (0, [])


def test_same_inode_with_other_content_is_detected_by_the_head(log: Path) -> None:
    append(log, b"a1\na2\n")
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0)
    assert len(t.read_lines()) == 2
    head, ino = t.head(), log.stat().st_ino
    assert head[0] == 6
    t.close()
    with open(log, "r+b") as f:                 # same inode, same length, other lines
        f.write(b"b1\nb2\n")
    events: list[str] = []
    t = LogTailer(str(log), inode=ino, offset=6, head=head, on_event=lambda e, **f: events.append(e))
    assert lines_of(t) == [(0, b"b1", ""), (3, b"b2", "")]
    assert events == ["log_replaced_same_inode"]
    t.close()
    t = LogTailer(str(log), inode=ino, offset=6, head=_head_after_read(log))
    assert lines_of(t) == []                    # the same file: resume at the offset
    t.close()


def _head_after_read(p: Path) -> tuple[int, str]:
    t = LogTailer(str(p), inode=p.stat().st_ino, offset=0)
    t.read_lines()
    h = t.head()
    t.close()
    return h


def test_limits_bound_one_call_and_rotation_waits_for_the_old_file_to_be_finished(log: Path, tmp_path: Path) -> None:
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0, chunk_bytes=64)
    append(log, b"".join(b"old-%04d\n" % i for i in range(100)))
    first = t.read_lines(max_lines=10)
    assert 10 <= len(first) < 20
    os.rename(log, tmp_path / "deltascout.log.1")
    log.write_bytes(b"new-0\n")
    got = list(first)
    for _ in range(100):
        batch = t.read_lines(max_lines=1000, max_bytes=100)
        assert len(batch) <= 20
        got += batch
        if got[-1].data == b"new-0":
            break
    assert [ln.data for ln in got] == [b"old-%04d" % i for i in range(100)] + [b"new-0"]
    assert [ln.offset for ln in got[:3]] == [0, 9, 18] and got[-1].offset == 0
    t.close()


# ---- issue 15: rewrites in place, rotation while the writer holds the old file --------------------------------

def _lines(tag: str, n: int) -> bytes:
    return b"".join(b'{"ts":"%s","n":%04d}\n' % (tag.encode(), i) for i in range(n))  # all the same length


def _copytruncate_and_write(p: Path, data: bytes) -> None:
    """What a logger does after copytruncate: truncate and write new lines in one open, before anyone looks."""
    with open(p, "r+b") as f:
        f.truncate(0)
        f.write(data)


def test_copytruncate_then_new_lines_at_once_loses_nothing(log: Path) -> None:
    """Same-length lines: after the rewrite the byte before our offset is a newline again, and the file is longer
    than the offset; only a fingerprint of the bytes before the offset tells. All 15 new lines are read."""
    events: list[str] = []
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0, on_event=lambda e, **f: events.append(e))
    append(log, _lines("old", 12))
    assert len(t.read_lines()) == 12
    _copytruncate_and_write(log, _lines("new", 15))
    got = t.read_lines()
    assert [ln.data for ln in got] == _lines("new", 15).splitlines()
    assert got[0].offset == 0 and "log_rewritten" in events
    assert t.read_lines() == []                       # and nothing twice
    t.close()


def test_copytruncate_while_away_is_detected_by_the_persisted_fingerprint(log: Path) -> None:
    append(log, _lines("old", 12))
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0)
    got = t.read_lines()
    ino, off = t.position
    tail = line_fingerprint(got[-1])
    t.close()
    # what a restart with the stored (inode, offset, tail) sees: the same file resumes at the offset ...
    t = LogTailer(str(log), inode=ino, offset=off, tail=tail)
    assert t.read_lines() == []
    t.close()
    # ... a rewritten one (same inode, longer, a newline before the offset) is read from 0
    _copytruncate_and_write(log, _lines("new", 15))
    events: list[str] = []
    t = LogTailer(str(log), inode=ino, offset=off, tail=tail, on_event=lambda e, **f: events.append(e))
    assert [ln.data for ln in t.read_lines()] == _lines("new", 15).splitlines()
    assert events == ["log_rewritten"]
    t.close()


def test_fingerprint_of_every_kind_of_line_is_the_bytes_before_its_end(log: Path) -> None:
    """Computed from the line alone (a too-long line keeps its last bytes), it equals the file's bytes before
    the line's end, so a restart at that offset resumes exactly there."""
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0, max_line_bytes=100, chunk_bytes=64)
    append(log, b"short\n" + b"y" * 300 + b"z" * 20 + b"\n" + b"x" * 200 + b"\n")
    got = t.read_lines()
    t.close()
    assert [ln.status for ln in got] == ["", "too_long", "too_long"]
    data = log.read_bytes()
    from shared.adapters.log_tail import TAIL_BYTES, fingerprint
    for k, ln in enumerate(got):
        fp = line_fingerprint(ln)
        assert fp == fingerprint(data[max(0, ln.end - TAIL_BYTES):ln.end])
        t2 = LogTailer(str(log), inode=ln.inode, offset=ln.end, tail=fp, max_line_bytes=100)
        assert [x.offset for x in t2.read_lines()] == [x.offset for x in got[k + 1:]]
        t2.close()


def test_rotation_while_the_writer_holds_the_old_file_loses_nothing(log: Path, tmp_path: Path) -> None:
    """The writer goes on appending to the renamed file after ingest moved to the new one: those lines are read
    (the old file stays open until idle), in the order they came, and nothing twice."""
    events: list[str] = []
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0, on_event=lambda e, **f: events.append(e))
    old_ino = log.stat().st_ino
    with open(log, "ab", buffering=0) as writer:            # the writer's own open file
        writer.write(b"a1\n")
        assert lines_of(t) == [(0, b"a1", "")]
        os.rename(log, tmp_path / "deltascout.log.1")
        log.write_bytes(b"b1\n")                            # a new file at the path
        assert [(ln.inode, ln.data) for ln in t.read_lines()] == [(log.stat().st_ino, b"b1")]
        writer.write(b"a2-after-the-switch\n")              # late line into the old file
        append(log, b"b2\n")
        got = t.read_lines()
        assert [(ln.inode == old_ino, ln.data) for ln in got] == [(True, b"a2-after-the-switch"), (False, b"b2")]
    assert t.draining == [(old_ino, 3 + len(b"a2-after-the-switch\n"))]
    assert t.read_lines() == []
    t.close()


def test_a_restart_while_draining_resumes_both_files_where_they_were(log: Path, tmp_path: Path) -> None:
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0)
    append(log, b"a1\n")
    a1 = t.read_lines()[-1]
    os.rename(log, tmp_path / "deltascout.log.1")
    log.write_bytes(b"b1\n")
    b1 = t.read_lines()[-1]
    (ino, off), (old_ino, old_off) = t.position, t.draining[0]
    t.close()                                                # crash: (current, draining) were persisted
    append(tmp_path / "deltascout.log.1", b"a2\n")
    append(log, b"b2\n")
    events: list[str] = []
    t = LogTailer(str(log), inode=ino, offset=off, tail=line_fingerprint(b1),
                  draining=[FilePos(old_ino, old_off, line_fingerprint(a1))], on_event=lambda e, **f: events.append(e))
    assert [(ln.inode == old_ino, ln.data) for ln in t.read_lines()] == [(True, b"a2"), (False, b"b2")]
    assert "log_draining_resumed" in events
    t.close()


def test_deleted_log_is_said_with_the_file_still_read_and_its_return(log: Path) -> None:
    events: list[tuple[str, dict]] = []
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0, on_event=lambda e, **f: events.append((e, f)),
                  rotate_idle_sec=0)
    with open(log, "ab", buffering=0) as writer:
        writer.write(b"a1\n")
        assert len(t.read_lines()) == 1
        os.unlink(log)
        writer.write(b"a2\n")                                # still written to the deleted file
        assert [ln.data for ln in t.read_lines()] == [b"a2"]
        assert t.read_lines() == []
    missing = [f for e, f in events if e == "log_missing"]
    assert len(missing) == 1 and missing[0]["deleted"] is True
    log.write_bytes(b"b1\n")
    assert [ln.data for ln in t.read_lines()] == [b"b1"]
    assert [e for e, _ in events if e in ("log_missing", "log_appeared")] == ["log_missing", "log_appeared"]
    t.close()
