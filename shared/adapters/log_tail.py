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


EventFn = Callable[..., None]


def _noop(event: str, **fields: object) -> None:
    return None


class _Inotify:
    """Minimal inotify through ctypes. `ok` is False when unavailable (then callers poll)."""

    def __init__(self) -> None:
        self.fd = -1
        self._libc = None
        self._file_wd = -1
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

    def watch_file(self, path: str) -> None:
        # One file watch at a time; the old one (if its inode is gone) is removed by the kernel or replaced.
        if self._file_wd >= 0:
            self._libc.inotify_rm_watch(self.fd, self._file_wd)  # type: ignore[union-attr]
        self._file_wd = self.add(path, _FILE_MASK)

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


class LogTailer:
    """Reads complete lines appended to `path`, starting at (`inode`, `offset`).

    `inode=0` means "no file known yet": whatever file appears is read from `offset` (normally 0).
    If the file at `path` has another inode than `inode`, it replaced the one the offset belongs to (rotation
    while we were away): it is read from 0. If it is shorter than `offset`, it was truncated: read from 0.
    """

    def __init__(self, path: str, *, inode: int = 0, offset: int = 0, max_line_bytes: int = 65536,
                 chunk_bytes: int = 256 * 1024, poll_sec: float = 0.05, on_event: EventFn | None = None,
                 use_inotify: bool = True, head: tuple[int, str] | None = None) -> None:
        self.path = os.path.abspath(path)
        self.dir = os.path.dirname(self.path)
        self.max_line_bytes = max_line_bytes
        self.chunk_bytes = chunk_bytes
        self.poll_sec = poll_sec
        self._event = on_event or _noop
        self._want_inode, self._want_offset = inode, offset
        self._want_head = head
        self._head: tuple[int, str] = (0, "")
        self._fd: int | None = None
        self._ino = inode
        self._pos = offset            # next byte to read
        self._committed = offset      # end of the last returned line
        self._buf = bytearray()       # partial line starting at _line_start
        self._line_start = offset
        self._discard = False         # inside an over-long line: skipping to its newline
        self._discard_prefix = b""
        self._missing_logged = False
        self._budget = 0
        self._inotify = _Inotify() if use_inotify else None
        self._dir_watched = False
        self._watch_dir()

    # ---- public -------------------------------------------------------------------------------------
    @property
    def position(self) -> tuple[int, int]:
        """(inode, offset) just after the last returned line."""
        return self._ino, self._committed

    def head(self) -> tuple[int, str]:
        """(n, hash) of the first n <= HEAD_BYTES bytes of the current file (as far as read), to tell a file
        from another one that got the same inode number. (0, "") when unknown."""
        if self._fd is None:
            return 0, ""
        if self._head[0] < HEAD_BYTES and self._pos > self._head[0]:
            self._head = _head_of(self._fd, min(HEAD_BYTES, self._pos))
        return self._head

    @property
    def using_inotify(self) -> bool:
        return bool(self._inotify and self._inotify.ok and self._dir_watched)

    def read_lines(self, max_lines: int = 10_000, max_bytes: int = 8 * 1024 * 1024) -> list[Line]:
        """The complete lines available now, stopping after about max_lines lines or max_bytes bytes (one chunk
        is split whole, so either may be exceeded by one chunk's worth)."""
        out: list[Line] = []
        self._budget = max_bytes
        if self._fd is None and not self._open_initial():
            return out
        for _ in range(1000):  # bounded: each pass either returns or switches file / restarts after truncation
            got = self._read_available(out, max_lines)
            if got == "rewritten":
                self._restart_truncated("rewritten")
                continue
            if got == "limit":
                return out
            assert self._fd is not None
            st = os.fstat(self._fd)
            if st.st_size < self._pos:
                self._restart_truncated("truncated", size=st.st_size)
                continue
            try:
                pst = os.stat(self.path)
            except FileNotFoundError:
                return out  # renamed away and not yet recreated: keep reading the old file
            if pst.st_ino == self._ino:
                return out
            # Rotation: finish the old file (one more pass: the writer may have appended meanwhile). If the
            # limits stop us first, the next call comes back here. ("rewritten" after it was moved away: nothing
            # more to take from it.)
            if self._read_available(out, max_lines) == "limit":
                return out
            self._flush_partial(out)
            old = self._ino
            if not self._open_new(0):
                return out
            self._event("log_rotated", old_inode=old, inode=self._ino, path=self.path)
        return out

    def wait(self, timeout: float) -> bool:
        """Block until the file may have changed or `timeout` s passed. True if woken by an event."""
        if self.using_inotify:
            return self._inotify.wait(min(timeout, 1.0))  # type: ignore[union-attr]
        if self._inotify and self._inotify.ok and not self._dir_watched:
            self._watch_dir()
        time.sleep(max(0.0, min(timeout, self.poll_sec)))
        return False

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._inotify:
            self._inotify.close()

    # ---- opening ------------------------------------------------------------------------------------
    def _watch_dir(self) -> None:
        if self._inotify and self._inotify.ok:
            self._dir_watched = self._inotify.add(self.dir, _DIR_MASK) >= 0

    def _open_fd(self) -> tuple[int, os.stat_result] | None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not self._missing_logged:
                self._event("log_missing", path=self.path)
                self._missing_logged = True
            return None
        if self._missing_logged:
            self._event("log_appeared", path=self.path)
            self._missing_logged = False
        if self._inotify and self._inotify.ok:
            self._inotify.watch_file(self.path)
        return fd, os.fstat(fd)

    def _set_file(self, fd: int, ino: int, pos: int) -> None:
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._ino = fd, ino
        self._head = (0, "")
        self._pos = self._committed = self._line_start = pos
        self._buf.clear()
        self._discard = False

    def _open_new(self, pos: int) -> bool:
        got = self._open_fd()
        if got is None:
            return False
        fd, st = got
        self._set_file(fd, st.st_ino, pos)
        return True

    def _open_initial(self) -> bool:
        got = self._open_fd()
        if got is None:
            return False
        fd, st = got
        want_ino, off = self._want_inode, self._want_offset
        if want_ino and st.st_ino != want_ino:
            old = self._find_inode(want_ino)
            if old is not None:
                # Rotated while we were away and the old file is still in the directory (e.g. renamed to
                # .1): finish it from our offset first; read_lines then switches to the new file at 0.
                os.close(fd)
                ofd, ost, name = old
                self._event("log_rotated_while_away", old_inode=want_ino, old_name=name, inode=st.st_ino,
                            old_offset=off)
                self._set_file(ofd, want_ino, off if ost.st_size >= off else 0)
                return True
            self._event("log_replaced_while_away", old_inode=want_ino, inode=st.st_ino, old_offset=off)
            off = 0
        elif st.st_size < off:
            self._event("log_truncated", inode=st.st_ino, offset=off, size=st.st_size)
            off = 0
        elif off > 0 and os.pread(fd, 1, off - 1) != b"\n":
            self._event("log_rewritten", inode=st.st_ino, offset=off)
            off = 0
        elif off > 0 and self._want_head and self._want_head[0] > 0 and \
                _head_of(fd, self._want_head[0]) != self._want_head:
            # Same inode number, different first bytes: the file was deleted and recreated while we were away
            # and the kernel reused the inode number.
            self._event("log_replaced_same_inode", inode=st.st_ino, offset=off)
            off = 0
        self._set_file(fd, st.st_ino, off)
        return True

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

    def _restart_truncated(self, why: str, **fields: object) -> None:
        self._event(f"log_{why}", inode=self._ino, offset=self._pos, **fields)
        assert self._fd is not None
        self._pos = self._committed = self._line_start = 0
        self._head = (0, "")
        self._buf.clear()
        self._discard = False

    # ---- reading ------------------------------------------------------------------------------------
    def _read_available(self, out: list[Line], max_lines: int) -> str:
        """Read from _pos to EOF. Returns "eof", "limit" (max_lines or the byte budget reached first) or
        "rewritten" (the byte before our offset is no longer a newline: the file was rewritten in place)."""
        fd = self._fd
        assert fd is not None
        while True:
            if len(out) >= max_lines or self._budget <= 0:
                return "limit"
            check = self._pos > 0 and not self._buf and not self._discard
            start = self._pos - 1 if check else self._pos
            data = os.pread(fd, self.chunk_bytes, start)
            if check:
                if not data:
                    return "eof"  # shorter than _pos: the caller's size check reports the truncation
                if data[0] != 0x0A:
                    return "rewritten"
                data = data[1:]
            if not data:
                return "eof"
            self._budget -= len(data)
            self._consume(data, out)

    def _consume(self, data: bytes, out: list[Line]) -> None:
        base = self._pos
        n0 = len(out)
        self._pos += len(data)
        ino, cap = self._ino, self.max_line_bytes
        i = 0
        find = data.find
        while True:
            j = find(b"\n", i)
            if j < 0:
                break
            if self._discard:
                out.append(Line(ino, self._line_start, base + j + 1, self._discard_prefix,
                                base + j - self._line_start, "too_long"))
                self._discard = False
            elif self._buf:
                self._buf += data[i:j]
                line = bytes(self._buf)
                self._buf.clear()
                n = len(line)
                out.append(Line(ino, self._line_start, base + j + 1, line if n <= cap else line[:PREFIX_BYTES], n,
                                "" if n <= cap else "too_long"))
            else:
                n = j - i
                if n <= cap:
                    out.append(Line(ino, base + i, base + j + 1, data[i:j], n, ""))
                else:
                    out.append(Line(ino, base + i, base + j + 1, data[i:i + PREFIX_BYTES], n, "too_long"))
            i = j + 1
        if len(out) > n0:
            self._committed = out[-1].end
        if i < len(data):
            if self._discard:
                return
            if not self._buf:
                self._line_start = base + i
            self._buf += data[i:]
            if len(self._buf) > cap:
                self._discard = True
                self._discard_prefix = bytes(self._buf[:PREFIX_BYTES])
                self._buf.clear()

    def _flush_partial(self, out: list[Line]) -> None:
        """The old file ended without a newline: report what is there rather than drop it silently."""
        if self._discard:
            out.append(Line(self._ino, self._line_start, self._pos, self._discard_prefix,
                            self._pos - self._line_start, "partial"))
        elif self._buf:
            out.append(Line(self._ino, self._line_start, self._pos, bytes(self._buf[:PREFIX_BYTES]),
                            len(self._buf), "partial"))
        self._buf.clear()
        self._discard = False
        self._line_start = self._committed = self._pos


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
