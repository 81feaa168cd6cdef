"""Child processes that must not outlive their parent (Linux): a replay's private stack, a sweep worker's
replay. A parent killed at any line (kill -9 included) leaves no stack running on its own."""
from __future__ import annotations

import ctypes
import signal

PR_SET_PDEATHSIG = 1
try:   # loaded here, once: between fork and exec (preexec_fn) the child only calls it
    _LIBC: ctypes.CDLL | None = ctypes.CDLL("libc.so.6", use_errno=True)
except OSError:
    _LIBC = None   # not Linux: the parent's own SIGTERM handling (replay.py) is what stops the stack


def die_with_parent() -> None:
    """preexec_fn: SIGTERM this child when its parent dies (a no-op where prctl is not there)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
