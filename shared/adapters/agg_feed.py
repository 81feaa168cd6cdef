"""Read the last bars of the live `aggregated.csv` without scanning the file: fail loud on a wrong header,
report a missing file or bad rows to the caller (who fails closed)."""
from __future__ import annotations

import os
from pathlib import Path

import msgspec

from shared.domain.bars import Bar, BadRow, check_header, parse_row

_BLOCK = 8192


class FeedUnavailable(RuntimeError):
    """The feed file is missing or unreadable: no trailing move may be based on it."""


class FeedRead(msgspec.Struct, frozen=True):
    """The last bars (oldest first), how many rows of that window were malformed and the first few of them
    (reason and row), for the event and the alert that say so."""
    bars: list[Bar]
    bad_rows: int
    bad_samples: list[str] = []


BAD_SAMPLES = 3


def read_tail_lines(path: Path, n: int) -> list[str]:
    """The last `n` complete lines of `path`, reading backwards from EOF in blocks."""
    with open(path, "rb") as f:
        f.seek(0, os.SEEK_END)
        end = pos = f.tell()
        chunks: list[bytes] = []
        newlines = 0
        while pos > 0 and newlines <= n:   # blocks kept apart and joined once: linear in what is read
            step = min(_BLOCK, pos)
            pos -= step
            f.seek(pos)
            chunks.append(f.read(step))
            newlines += chunks[-1].count(b"\n")
        buf = b"".join(reversed(chunks))
        lines = buf.split(b"\n")
        if end and not buf.endswith(b"\n"):
            lines = lines[:-1]  # a row still being written
        lines = [ln for ln in lines if ln.strip()]
        if pos > 0:
            lines = lines[1:]  # first piece may be a partial line
        return [ln.decode("utf-8", "replace") for ln in lines[-n:]]


def read_header(path: Path) -> str:
    """The first line of the file."""
    with open(path, "rb") as f:
        return f.readline(4096).decode("utf-8", "replace")


def read_last_bars(path: str | Path, n: int) -> FeedRead:
    """Up to `n` last bars. Raises BadHeader (fail loud) or FeedUnavailable (fail closed)."""
    p = Path(path)
    try:
        check_header(read_header(p))
        lines = read_tail_lines(p, n + 1)
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        raise FeedUnavailable(f"aggregated.csv unavailable at {p}: {e.__class__.__name__}") from None
    bars: list[Bar] = []
    bad = 0
    samples: list[str] = []
    for line in lines:
        if line.startswith("Timestamp"):
            continue
        try:
            bars.append(parse_row(line))
        except BadRow as e:
            bad += 1
            if len(samples) < BAD_SAMPLES:
                samples.append(f"{e}: {line[:200]!r}")
    bars.sort(key=lambda b: b.ts)
    return FeedRead(bars=bars[-n:], bad_rows=bad, bad_samples=samples)
