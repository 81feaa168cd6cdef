"""Redis streams: typed publish, and consumer groups that ack after the work is durable and re-claim
pending entries after a crash."""
from __future__ import annotations

import time
from typing import Iterator

import msgspec
import redis

from shared.domain.messages import StreamMessage

_encoder = msgspec.json.Encoder(decimal_format="string")
_decoder = msgspec.json.Decoder(StreamMessage)


def encode_fields(msg: StreamMessage) -> dict[str, bytes]:
    """The stream entry fields for `msg`: `type` (its tag) and `data` (JSON)."""
    return {"type": type(msg).__struct_config__.tag, "data": _encoder.encode(msg)}  # type: ignore[dict-item]


def decode_fields(fields: dict[bytes, bytes]) -> StreamMessage:
    """Decode an entry written by encode_fields; raise msgspec.ValidationError/DecodeError when malformed."""
    return _decoder.decode(fields[b"data"])


def publish(r: redis.Redis | redis.client.Pipeline, stream: str, msg: StreamMessage, maxlen: int) -> object:
    """XADD `msg` to `stream`, trimmed approximately to `maxlen` entries. Returns the id (or the pipeline)."""
    return r.xadd(stream, encode_fields(msg), maxlen=maxlen, approximate=True)


class Entry(msgspec.Struct, frozen=True):
    """One delivered stream entry; `msg` is None when the entry could not be decoded (`error` says why)."""
    id: str
    msg: StreamMessage | None
    error: str = ""


class GroupConsumer:
    """A consumer in a consumer group. `read()` returns this consumer's own un-acked entries first (after a
    restart), then entries idle too long in dead consumers' lists, then new ones."""

    def __init__(self, r: redis.Redis, stream: str, group: str, consumer: str, claim_idle_ms: int = 30_000,
                 start_id: str = "0", claim_every_sec: float = 2.0) -> None:
        self.r, self.stream, self.group, self.consumer = r, stream, group, consumer
        self.claim_idle_ms = claim_idle_ms
        # Orphans only appear when a consumer dies: looking for them on every read would cost a round trip
        # on the hot path of every loop.
        self.claim_every_sec = claim_every_sec
        self._next_claim = 0.0
        self._start_id = start_id
        self._backlog = True
        self.ensure_group()

    def ensure_group(self) -> None:
        """Create the group (and the stream) if missing."""
        try:
            self.r.xgroup_create(self.stream, self.group, id=self._start_id, mkstream=True)
        except redis.ResponseError as e:
            if "BUSYGROUP" not in str(e):
                raise

    def _decode(self, rows: list) -> list[Entry]:
        out = []
        for entry_id, fields in rows:
            eid = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
            if fields is None:  # deleted by trimming while pending
                out.append(Entry(eid, None, "entry trimmed"))
                continue
            try:
                out.append(Entry(eid, decode_fields(fields)))
            except (msgspec.DecodeError, msgspec.ValidationError, KeyError) as e:
                out.append(Entry(eid, None, f"undecodable entry: {e}"))
        return out

    def _read(self, start: str, block_ms: int | None, count: int) -> list[Entry]:
        try:
            res = self.r.xreadgroup(self.group, self.consumer, {self.stream: start}, count=count, block=block_ms)
        except redis.ResponseError as e:
            if "NOGROUP" not in str(e):
                raise
            self.ensure_group()  # Redis restarted empty or the stream was deleted: recreate and retry
            res = self.r.xreadgroup(self.group, self.consumer, {self.stream: start}, count=count, block=block_ms)
        return self._decode(res[0][1]) if res else []

    def _claim(self, count: int) -> list[Entry]:
        res = self.r.xautoclaim(self.stream, self.group, self.consumer, self.claim_idle_ms, "0-0", count=count)
        return self._decode(res[1]) if res and res[1] else []

    def read(self, block_ms: int | None = 200, count: int = 10) -> list[Entry]:
        """Next entries to process: own backlog, then claimed orphans, then new (blocking up to block_ms;
        None or 0 = do not block: Redis would read BLOCK 0 as 'forever')."""
        block_ms = block_ms or None
        if self._backlog:
            own = self._read("0", None, count)
            if own:
                return own
            self._backlog = False
        if time.monotonic() >= self._next_claim:
            self._next_claim = time.monotonic() + self.claim_every_sec
            claimed = self._claim(count)
            if claimed:
                self._next_claim = 0.0  # there may be more
                return claimed
        return self._read(">", block_ms, count)

    def ack(self, entry_id: str) -> None:
        """Acknowledge after the work the entry caused is durable."""
        self.r.xack(self.stream, self.group, entry_id)

    def iter_pending_ids(self) -> Iterator[str]:
        """Ids this consumer holds un-acked (for tests and status)."""
        for row in self.r.xpending_range(self.stream, self.group, "-", "+", 1000, consumername=self.consumer):
            yield row["message_id"].decode() if isinstance(row["message_id"], bytes) else row["message_id"]
