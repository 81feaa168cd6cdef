"""The log tailer on real files: complete lines only, over-long lines, truncation, rotation, inotify wake-up,
and reading the tail backwards."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from shared.adapters.log_tail import PREFIX_BYTES, LogTailer, read_tail_lines


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
        assert len(t._buf) <= 100             # bounded memory: nothing of it is kept beyond the cap
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


def test_rotation_finishes_the_old_file_then_reads_the_new_from_zero(log: Path, tmp_path: Path) -> None:
    events: list[str] = []
    t = LogTailer(str(log), inode=log.stat().st_ino, offset=0, on_event=lambda e, **f: events.append(e))
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
        (True, 6, b"a3", ""), (True, 9, b"part", "partial"), (False, 0, b"b1", "")]
    assert t.position == (log.stat().st_ino, 3)
    assert "log_rotated" in events
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
