"""The alert throttle in Redis, shared by every process of one EXEC_PREFIX (shared.domain.alert_throttle is the
rule). One key per cause: `{prefix}alerts:throttle:<kind>|<trade_key>|<cause>` (JSON Record, 7-day TTL), so a
restarted process keeps holding back what was already sent, and two processes never both send."""
from __future__ import annotations

import msgspec
import redis

from shared.domain.alert_throttle import Decision, Record, decide, throttle_key

RECORD_TTL_SEC = 7 * 24 * 3600
_enc = msgspec.json.Encoder()
_dec = msgspec.json.Decoder(Record)


class AlertGate:
    """`allow()` before sending an alert; `recover()` once its cause is gone."""

    def __init__(self, r: redis.Redis, prefix: str, window_sec: float) -> None:
        self.r, self.prefix, self.window_sec = r, prefix, window_sec

    def _key(self, kind: str, trade_key: str, cause: str) -> str:
        return f"{self.prefix}alerts:throttle:{throttle_key(kind, trade_key, cause)}"

    @staticmethod
    def _load(raw: bytes | None) -> Record | None:
        if raw is None:
            return None
        try:
            return _dec.decode(raw)
        except (msgspec.DecodeError, msgspec.ValidationError):
            return None  # an unreadable record: treat the cause as new (one alert too many beats one lost)

    def allow(self, kind: str, trade_key: str, cause: str, severity: str, now: float) -> Decision:
        """Decide and record atomically (WATCH on the cause's key)."""
        key = self._key(kind, trade_key, cause)
        with self.r.pipeline() as pipe:
            while True:
                try:
                    pipe.watch(key)
                    d = decide(self._load(pipe.get(key)), now, self.window_sec, severity)
                    pipe.multi()
                    pipe.set(key, _enc.encode(d.record), ex=RECORD_TTL_SEC)
                    pipe.execute()
                    return d
                except redis.WatchError:
                    continue

    def recover(self, kind: str, trade_key: str = "", cause: str = "") -> Record | None:
        """End the cause's episode: its record (so the caller says "recovered") or None when none was active."""
        key = self._key(kind, trade_key, cause)
        with self.r.pipeline(transaction=True) as pipe:
            pipe.get(key)
            pipe.delete(key)
            raw, _ = pipe.execute()
        return self._load(raw)
