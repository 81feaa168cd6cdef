"""Tail a growing log file from a persisted (inode, offset): complete lines only, rotation and truncation
detected, woken by inotify (poll fallback), cost proportional to the new bytes, memory bounded by the line cap.

    t = LogTailer(path, inode=ino, offset=off, max_line_bytes=65536, on_event=log)
    while True:
        for line in t.read_lines():      # Line(inode, offset, end, data, length, status)
            ...                          # persist (line.inode, line.end) with the result
        t.wait(1.0)                      # returns as soon as the file (or its directory) changes

A line's `status` is "" (a complete line), "too_long" (longer than the cap: `data` holds only a prefix; the
rest was consumed up to its newline without being buffered) or "partial" (the old file of a rotation ended
without a newline). Offsets are byte offsets in the file the line came from (`inode`).
"""
from __future__ import annotations

import ctypes
import ctypes.util
import errno
import hashlib
import os
import select
import time
from typing import Callable, NamedTuple

PREFIX_BYTES = 2048  # how much of an over-long line is kept for the operator
HEAD_BYTES = 256     # how much of the start of a file identifies it (besides its inode)
TAIL_BYTES = 128     # how many bytes before the offset identify what was read (a rewrite in place changes them)

_IN_MODIFY = 0x00000002
_IN_ATTRIB = 0x00000004
_IN_CLOSE_WRITE = 0x00000008
_IN_MOVED_FROM = 0x00000040
_IN_MOVED_TO = 0x00000080
_IN_CREATE = 0x00000100
_IN_DELETE = 0x00000200
_IN_DELETE_SELF = 0x00000400
_IN_MOVE_SELF = 0x00000800
_IN_NONBLOCK = 0o4000
_IN_CLOEXEC = 0o2000000

_FILE_MASK = _IN_MODIFY | _IN_ATTRIB | _IN_CLOSE_WRITE | _IN_MOVE_SELF | _IN_DELETE_SELF
_DIR_MASK = _IN_CREATE | _IN_MOVED_TO | _IN_MOVED_FROM | _IN_DELETE | _IN_MODIFY


class Line(NamedTuple):
    inode: int
    offset: int        # start of the line in its file
    end: int           # offset just after its newline: where reading resumes
    data: bytes        # the line without its newline (a prefix when too_long)
    length: int        # full length in bytes without the newline
    status: str = ""   # "" | "too_long" | "partial"
    before: bytes = b""  # too_long / partial only: the last TAIL_BYTES bytes before `end` (see line_fingerprint)


class FilePos(NamedTuple):
    """Where reading resumes in one file, and the fingerprint of the bytes just before it."""
    inode: int
    offset: int
    tail: tuple[int, str] = (0, "")


EventFn = Callable[..., None]


def _noop(event: str, **fields: object) -> None:
    return None


def fingerprint(data: bytes) -> tuple[int, str]:
    """(length, hash) of some bytes of a file: what a rewrite in place changes."""
    return len(data), hashlib.blake2b(data, digest_size=8).hexdigest()


def line_fingerprint(ln: Line) -> tuple[int, str]:
    """Fingerprint of the (up to) TAIL_BYTES bytes just before `ln.end`, from the line itself (no I/O): persisted
    with the offset, it tells on restart whether the bytes before the offset are still the ones that were read."""
    if ln.status == "" and ln.length == len(ln.data):
        return fingerprint((ln.data[-(TAIL_BYTES - 1):] if len(ln.data) >= TAIL_BYTES else ln.data) + b"\n")
    return fingerprint(ln.before)


class _Inotify:
    """Minimal inotify through ctypes. `ok` is False when unavailable (then callers poll)."""

    def __init__(self) -> None:
        self.fd = -1
        self._libc = None
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
            fd = libc.inotify_init1(_IN_NONBLOCK | _IN_CLOEXEC)
        except (OSError, AttributeError):
            return
        if fd < 0:
            return
        self._libc, self.fd = libc, fd
        self._poll = select.poll()
        self._poll.register(fd, select.POLLIN)

    @property
    def ok(self) -> bool:
        return self.fd >= 0

    def add(self, path: str, mask: int) -> int:
        if not self.ok:
            return -1
        return int(self._libc.inotify_add_watch(self.fd, os.fsencode(path), mask))  # type: ignore[union-attr]

    def watch_fd(self, fd: int) -> int:
        """Watch the file open as `fd` (its inode, whatever its name now: a rotated file is still watched)."""
        return self.add(f"/proc/self/fd/{fd}", _FILE_MASK)

    def remove(self, wd: int) -> None:
        if self.ok and wd >= 0:
            self._libc.inotify_rm_watch(self.fd, wd)  # type: ignore[union-attr]

    def wait(self, timeout: float) -> bool:
        got = bool(self._poll.poll(max(0, int(timeout * 1000))))
        if got:
            self.drain()
        return got

    def drain(self) -> None:
        while True:
            try:
                if not os.read(self.fd, 65536):
                    return
            except BlockingIOError:
                return
            except OSError as e:
                if e.errno == errno.EINTR:
                    continue
                return

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class _File:
    """Reading state of one open file: position, the partial line, and what identifies the bytes read."""

    def __init__(self, fd: int, ino: int, pos: int) -> None:
        self.fd, self.ino = fd, ino
        self.wd = -1
        self.active = time.monotonic()   # last time bytes were read from it (or it was retired)
        self.reset(pos)
        if pos > 0:
            n = min(TAIL_BYTES, pos)
            self.tail = os.pread(fd, n, pos - n)
            self.head = os.pread(fd, min(HEAD_BYTES, pos), 0)

    def reset(self, pos: int) -> None:
        self.pos = self.committed = self.line_start = pos  # next byte to read; end of the last returned line
        self.buf = bytearray()        # partial line starting at line_start
        self.discard = False          # inside an over-long line: skipping to its newline
        self.discard_prefix = b""
        self.tail = b""               # the last TAIL_BYTES bytes before pos, as read
        self.head = b""               # the first HEAD_BYTES bytes, as read

    def intact(self) -> bool:
        """Are the bytes before `pos` (and the file's head) still the ones read? A file truncated and rewritten
        in place (copytruncate, then new lines at once) fails this even when it has grown past `pos`."""
        fd = self.fd
        if self.tail and os.pread(fd, len(self.tail), self.pos - len(self.tail)) != self.tail:
            return False
        return not self.head or os.pread(fd, len(self.head), 0) == self.head


class LogTailer:
    """Reads complete lines appended to `path`, starting at (`inode`, `offset`).

    `inode=0` means "no file known yet": whatever file appears is read from `offset` (normally 0).
    If the file at `path` has another inode than `inode`, it replaced the one the offset belongs to (rotation
    while we were away): it is read from 0. If the bytes before `offset` are not the ones read (`tail`, `head`
    fingerprints) or the file is shorter, it was truncated or rewritten: read from 0.

    Rotation by rename: the old file is kept open and read (the writer may still hold it) until it has been idle
    for `rotate_idle_sec`, while the new file is read from 0; then the old one is closed (its unterminated last
    line, if any, is returned as "partial"). `draining` lists the old files still open; pass them back as
    `draining=` after a restart.
    """

    def __init__(self, path: str, *, inode: int = 0, offset: int = 0, max_line_bytes: int = 65536,
                 chunk_bytes: int = 256 * 1024, poll_sec: float = 0.05, on_event: EventFn | None = None,
                 use_inotify: bool = True, head: tuple[int, str] | None = None,
                 tail: tuple[int, str] | None = None, draining: list[FilePos] | None = None,
                 rotate_idle_sec: float = 30.0) -> None:
        self.path = os.path.abspath(path)
        self.dir = os.path.dirname(self.path)
        self.max_line_bytes = max_line_bytes
        self.chunk_bytes = chunk_bytes
        self.poll_sec = poll_sec
        self.rotate_idle_sec = rotate_idle_sec
        self._event = on_event or _noop
        self._want = FilePos(inode, offset, tail or (0, ""))
        self._want_head = head
        self._want_draining = list(draining or [])
        self._cur: _File | None = None
        self._old: list[_File] = []
        self._missing_logged = False
        self._budget = 0
        self._inotify = _Inotify() if use_inotify else None
        self._dir_watched = False
        self._watch_dir()

    # ---- public -------------------------------------------------------------------------------------
    @property
    def position(self) -> tuple[int, int]:
        """(inode, offset) just after the last returned line of the current file."""
        if self._cur is None:
            return self._want.inode, self._want.offset
        return self._cur.ino, self._cur.committed

    @property
    def draining(self) -> list[tuple[int, int]]:
        """(inode, offset) of the rotated files still open (read until idle)."""
        return [(f.ino, f.committed) for f in self._old]

    def head(self) -> tuple[int, str]:
        """(n, hash) of the first n <= HEAD_BYTES bytes of the current file (as far as read), to tell a file
        from another one that got the same inode number. (0, "") when unknown."""
        if self._cur is None or not self._cur.head:
            return 0, ""
        return fingerprint(self._cur.head)

    @property
    def using_inotify(self) -> bool:
        return bool(self._inotify and self._inotify.ok and self._dir_watched)

    def read_lines(self, max_lines: int = 10_000, max_bytes: int = 8 * 1024 * 1024) -> list[Line]:
        """The complete lines available now (rotated files still open first), stopping after about max_lines
        lines or max_bytes bytes (one chunk is split whole, so either may be exceeded by one chunk's worth)."""
        out: list[Line] = []
        self._budget = max_bytes
        if self._cur is None and not self._open_initial():
            return out
        if not self._drain_old(out, max_lines):
            return out
        for _ in range(1000):  # bounded: each pass either returns or switches file / restarts after a rewrite
            cur = self._cur
            assert cur is not None
            got = self._read_available(cur, out, max_lines)
            if got == "rewritten":
                self._restart(cur)
                continue
            if got == "limit":
                return out
            try:
                pst = os.stat(self.path)
            except FileNotFoundError:
                self._say_missing(cur)
                return out  # renamed away or deleted and not yet recreated: keep reading the open file
            self._say_present()
            if pst.st_ino == cur.ino:
                return out
            # Rotation: keep the old file open (the writer may still append to it) and read the new one.
            if not self._open_new(0):
                return out
            self._retire(cur)
            self._event("log_rotated", old_inode=cur.ino, inode=self._cur.ino, path=self.path,  # type: ignore[union-attr]
                        old_offset=cur.committed, idle_close_sec=self.rotate_idle_sec)
        return out

    def wait(self, timeout: float) -> bool:
        """Block until a file may have changed or `timeout` s passed. True if woken by an event."""
        if self.using_inotify:
            return self._inotify.wait(min(timeout, 1.0))  # type: ignore[union-attr]
        if self._inotify and self._inotify.ok and not self._dir_watched:
            self._watch_dir()
        time.sleep(max(0.0, min(timeout, self.poll_sec)))
        return False

    def close(self) -> None:
        for f in [*self._old, *([self._cur] if self._cur else [])]:
            os.close(f.fd)
        self._old, self._cur = [], None
        if self._inotify:
            self._inotify.close()

    # ---- opening ------------------------------------------------------------------------------------
    def _watch_dir(self) -> None:
        if self._inotify and self._inotify.ok:
            self._dir_watched = self._inotify.add(self.dir, _DIR_MASK) >= 0

    def _say_missing(self, open_file: _File | None) -> None:
        if self._missing_logged:
            return
        deleted = open_file is not None and os.fstat(open_file.fd).st_nlink == 0
        self._event("log_missing", path=self.path, deleted=deleted,
                    **({"inode": open_file.ino, "offset": open_file.committed} if open_file else {}))
        self._missing_logged = True

    def _say_present(self) -> None:
        if self._missing_logged:
            self._event("log_appeared", path=self.path)
            self._missing_logged = False

    def _open_fd(self) -> tuple[int, os.stat_result] | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            self._say_missing(self._cur)
            return None
        self._say_present()
        return fd, os.fstat(fd)

    def _adopt(self, fd: int, ino: int, pos: int) -> _File:
        f = _File(fd, ino, pos)
        if self._inotify and self._inotify.ok:
            f.wd = self._inotify.watch_fd(fd)
        return f

    def _open_new(self, pos: int) -> bool:
        got = self._open_fd()
        if got is None:
            return False
        fd, st = got
        self._cur = self._adopt(fd, st.st_ino, pos)
        return True

    def _retire(self, f: _File) -> None:
        f.active = time.monotonic()
        self._old.append(f)

    def _close_file(self, f: _File) -> None:
        if self._inotify:
            self._inotify.remove(f.wd)
        os.close(f.fd)

    def _open_initial(self) -> bool:
        got = self._open_fd()
        if got is None:
            return False
        fd, st = got
        self._reopen_draining(st.st_ino)
        want = self._want
        off = want.offset
        if want.inode and st.st_ino != want.inode:
            old = self._find_inode(want.inode)
            if old is not None:
                # Rotated while we were away and the old file is still in the directory (e.g. renamed to
                # .1): drain it from our offset first, and read the new file from 0.
                ofd, ost, name = old
                self._event("log_rotated_while_away", old_inode=want.inode, old_name=name, inode=st.st_ino,
                            old_offset=off)
                self._retire(self._adopt(ofd, want.inode, self._checked_offset(ofd, ost, want, None)))
            else:
                self._event("log_replaced_while_away", old_inode=want.inode, inode=st.st_ino, old_offset=off)
            off = 0
        else:
            off = self._checked_offset(fd, st, want, self._want_head)
        self._cur = self._adopt(fd, st.st_ino, off)
        return True

    def _checked_offset(self, fd: int, st: os.stat_result, want: FilePos, head: tuple[int, str] | None) -> int:
        """`want.offset` if the file still holds the bytes read before it, else 0 (with the event saying why)."""
        off = want.offset
        if off <= 0:
            return 0
        if st.st_size < off:
            self._event("log_truncated", inode=st.st_ino, offset=off, size=st.st_size)
            return 0
        n, h = want.tail
        if n > 0:
            same = n <= off and fingerprint(os.pread(fd, n, off - n)) == (n, h)
        else:  # stored before fingerprints existed: at least a line must end just before the offset
            same = os.pread(fd, 1, off - 1) == b"\n"
        if not same:
            self._event("log_rewritten", inode=st.st_ino, offset=off)
            return 0
        if head and head[0] > 0 and _head_of(fd, head[0]) != head:
            # Same inode number, different first bytes: the file was deleted and recreated while we were away
            # and the kernel reused the inode number.
            self._event("log_replaced_same_inode", inode=st.st_ino, offset=off)
            return 0
        return off

    def _reopen_draining(self, cur_ino: int) -> None:
        """After a restart: the rotated files that were still being read, found again by inode."""
        for want in self._want_draining:
            if not want.inode or want.inode == cur_ino:
                continue
            old = self._find_inode(want.inode)
            if old is None:
                self._event("log_rotated_gone", old_inode=want.inode, old_offset=want.offset)
                continue
            ofd, ost, name = old
            self._retire(self._adopt(ofd, want.inode, self._checked_offset(ofd, ost, want, None)))
            self._event("log_draining_resumed", old_inode=want.inode, old_name=name, old_offset=want.offset)
        self._want_draining = []

    def _find_inode(self, ino: int) -> tuple[int, os.stat_result, str] | None:
        """Open the file of inode `ino` in our directory, if it is still there."""
        try:
            with os.scandir(self.dir) as it:
                for e in it:
                    try:
                        if e.inode() == ino and e.is_file(follow_symlinks=False):
                            fd = os.open(e.path, os.O_RDONLY | os.O_CLOEXEC)
                            st = os.fstat(fd)
                            if st.st_ino == ino:
                                return fd, st, e.name
                            os.close(fd)
                    except OSError:
                        continue
        except OSError:
            return None
        return None

    def _restart(self, f: _File) -> None:
        size = os.fstat(f.fd).st_size
        why = "truncated" if size < f.pos else "rewritten"
        self._event(f"log_{why}", inode=f.ino, offset=f.pos, size=size)
        f.reset(0)

    # ---- reading ------------------------------------------------------------------------------------
    def _drain_old(self, out: list[Line], max_lines: int) -> bool:
        """Read the rotated files still open; close those idle for rotate_idle_sec. False if a limit was hit."""
        now = time.monotonic()
        for f in list(self._old):
            got = self._read_available(f, out, max_lines)
            if got == "limit":
                return False
            if got == "rewritten":
                self._event("log_rotated_rewritten", old_inode=f.ino, old_offset=f.committed,
                            action="closed: a rotated file rewritten in place is no longer the log")
            elif now - f.active < self.rotate_idle_sec:
                continue
            else:
                self._flush_partial(f, out)
                self._event("log_rotated_closed", old_inode=f.ino, old_offset=f.committed,
                            idle_sec=round(now - f.active, 3))
            self._old.remove(f)
            self._close_file(f)
        return True

    def _read_available(self, f: _File, out: list[Line], max_lines: int) -> str:
        """Read from f.pos to EOF. Returns "eof", "limit" (max_lines or the byte budget reached first) or
        "rewritten" (the bytes before f.pos, or the head, are not the ones read: truncated / rewritten)."""
        while True:
            if len(out) >= max_lines or self._budget <= 0:
                return "limit"
            data = os.pread(f.fd, self.chunk_bytes, f.pos)
            # checked after the read: a rewrite just before it shows here, so `data` is never taken from a
            # rewritten file as if it continued the old one
            if not f.intact():
                return "rewritten"
            if not data:
                return "eof"
            self._budget -= len(data)
            self._consume(f, data, out)
            f.active = time.monotonic()

    def _consume(self, f: _File, data: bytes, out: list[Line]) -> None:
        base = f.pos
        prev_tail = f.tail
        n0 = len(out)
        f.pos += len(data)
        if len(f.head) == base and base < HEAD_BYTES:
            f.head = (f.head + data)[:HEAD_BYTES]
        f.tail = data[-TAIL_BYTES:] if len(data) >= TAIL_BYTES else (prev_tail + data)[-TAIL_BYTES:]
        ino, cap = f.ino, self.max_line_bytes
        i = 0
        find = data.find
        while True:
            j = find(b"\n", i)
            if j < 0:
                break
            if f.discard:
                out.append(Line(ino, f.line_start, base + j + 1, f.discard_prefix, base + j - f.line_start,
                                "too_long", _before(prev_tail, data, j + 1)))
                f.discard = False
            elif f.buf:
                f.buf += data[i:j]
                line = bytes(f.buf)
                f.buf.clear()
                n = len(line)
                if n <= cap:
                    out.append(Line(ino, f.line_start, base + j + 1, line, n, ""))
                else:
                    out.append(Line(ino, f.line_start, base + j + 1, line[:PREFIX_BYTES], n, "too_long",
                                    (line + b"\n")[-TAIL_BYTES:]))
            else:
                n = j - i
                if n <= cap:
                    out.append(Line(ino, base + i, base + j + 1, data[i:j], n, ""))
                else:
                    out.append(Line(ino, base + i, base + j + 1, data[i:i + PREFIX_BYTES], n, "too_long",
                                    _before(prev_tail, data, j + 1)))
            i = j + 1
        if len(out) > n0:
            f.committed = out[-1].end
        if i < len(data):
            if f.discard:
                return
            if not f.buf:
                f.line_start = base + i
            f.buf += data[i:]
            if len(f.buf) > cap:
                f.discard = True
                f.discard_prefix = bytes(f.buf[:PREFIX_BYTES])
                f.buf.clear()

    def _flush_partial(self, f: _File, out: list[Line]) -> None:
        """A rotated file ended without a newline: report what is there rather than drop it silently."""
        before = f.tail
        if f.discard:
            out.append(Line(f.ino, f.line_start, f.pos, f.discard_prefix, f.pos - f.line_start, "partial", before))
        elif f.buf:
            out.append(Line(f.ino, f.line_start, f.pos, bytes(f.buf[:PREFIX_BYTES]), len(f.buf), "partial", before))
        f.buf.clear()
        f.discard = False
        f.line_start = f.committed = f.pos


def _before(prev_tail: bytes, data: bytes, end: int) -> bytes:
    """The last TAIL_BYTES bytes of the stream before `end` (an index into `data`, whose bytes follow prev_tail)."""
    if end >= TAIL_BYTES:
        return data[end - TAIL_BYTES:end]
    return (prev_tail + data[:end])[-TAIL_BYTES:]


def _head_of(fd: int, n: int) -> tuple[int, str]:
    data = os.pread(fd, n, 0)
    return len(data), hashlib.blake2b(data, digest_size=8).hexdigest()


def read_tail_lines(path: str, n: int, end: int | None = None, block: int = 8192,
                    max_bytes: int = 64 * 1024 * 1024) -> tuple[int, int, list[bytes]]:
    """The last `n` complete lines of `path` ending at or before `end` (default EOF), read backwards in blocks.

    Returns (inode, boundary, lines) where boundary is the offset just after the last newline at or before
    `end` (0 if none): where reading new lines should start. At most `max_bytes` are read. Raises
    FileNotFoundError if the file is missing.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        st = os.fstat(fd)
        pos = st.st_size if end is None else min(end, st.st_size)
        chunks: list[bytes] = []
        boundary = -1
        newlines = 0
        read = 0
        while pos > 0 and read < max_bytes:
            size = min(block, pos)
            pos -= size
            data = os.pread(fd, size, pos)
            read += len(data)
            if boundary < 0:
                k = data.rfind(b"\n")
                if k < 0:
                    continue  # still inside the trailing partial line
                boundary = pos + k + 1
                data = data[:k + 1]
            chunks.append(data)
            newlines += data.count(b"\n")
            if newlines > n:
                break
        if boundary < 0:
            return st.st_ino, 0, []
        text = b"".join(reversed(chunks))
        lines = text.split(b"\n")[:-1]  # drop the empty piece after the final newline
        if pos > 0 or read >= max_bytes:
            lines = lines[1:]  # the first piece may be a fragment of a longer line
        return st.st_ino, boundary, lines[-n:] if n > 0 else []
    finally:
        os.close(fd)
