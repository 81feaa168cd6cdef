"""The paper exchange's state file: the whole state, written atomically after every mutation."""
from __future__ import annotations

import os
from pathlib import Path

import msgspec

from services.paper_exchange.model import EngineState

FORMAT_VERSION = 1


class Cursor(msgspec.Struct):
    """Where the replay stands: the next price point to play is point `point` of bar `bar`."""
    bar: int
    point: int
    done: bool = False


class Snapshot(msgspec.Struct):
    """Everything needed to continue after a restart."""
    engine: EngineState
    cursor: Cursor
    market_file: str
    seq: int = 0  # the last journal entry included
    version: int = FORMAT_VERSION


_encoder = msgspec.json.Encoder()


def save(path: Path, snap: Snapshot) -> None:
    """Write `snap` atomically: temporary file, fsync, os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(_encoder.encode(snap))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load(path: Path) -> Snapshot | None:
    """The saved snapshot, or None when there is none. A corrupt file raises (never silently reset money)."""
    if not path.exists():
        return None
    return msgspec.json.decode(path.read_bytes(), type=Snapshot)
