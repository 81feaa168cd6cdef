"""The IP's order-count budget in Redis, shared by every process (one hash): what the exchange last reported in
X-MBX-ORDER-COUNT-10S / -1D, and a -1015's Retry-After. Entries ask it (`entry_wait`); stops never do."""
from __future__ import annotations

import time
from typing import Any, Callable

import redis

from shared.domain.order_count import DAY, WINDOW_10S, OrderCounts, entry_wait, window_start

# Keep the higher count of the same window: two processes' replies can arrive out of order.
_NOTE = """
local function put(cf, wf, count, win)
  local w = tonumber(redis.call('HGET', KEYS[1], wf) or '0')
  local c = tonumber(redis.call('HGET', KEYS[1], cf) or '0')
  if tonumber(win) > w or (tonumber(win) == w and tonumber(count) > c) then
    redis.call('HSET', KEYS[1], cf, count, wf, win)
  end
end
if ARGV[1] ~= '' then put('c10', 'w10', ARGV[1], ARGV[2]) end
if ARGV[3] ~= '' then put('c1d', 'd', ARGV[3], ARGV[4]) end
redis.call('EXPIRE', KEYS[1], 2 * 86400)
return 1
"""
# The counts read with the signal's gate (Runtime.load_gate, one pipelined round trip) decide its entry while they
# are this young; an entry sent later (a retry, Plan B) reads them again.
FRESH_SEC = 0.25
_HOLD = ("local h = tonumber(redis.call('HGET', KEYS[1], 'hold') or '0') "
         "if tonumber(ARGV[1]) > h then redis.call('HSET', KEYS[1], 'hold', ARGV[1]) end "
         "redis.call('EXPIRE', KEYS[1], 2 * 86400) return 1")


def _count(headers: Any, name: str) -> str:
    raw = headers.get(name)
    return raw if isinstance(raw, str) and raw.isdigit() else ""


def _text(v: bytes | str) -> str:
    return v.decode() if isinstance(v, bytes) else v


class RedisOrderBudget:
    """`note(headers)` after every order reply, `exceeded(retry_after)` on -1015, `entry_wait()` before an entry."""

    def __init__(self, r: redis.Redis, key: str, limit_10s: int, limit_1d: int, reserve: int,
                 now: Callable[[], float] = time.time) -> None:
        self._r, self._key, self._now = r, key, now
        self.limit_10s, self.limit_1d, self.reserve = limit_10s, limit_1d, reserve
        self._cached: OrderCounts | None = None   # read with the signal's gate (`prime`)
        self._read_at = float("-inf")

    def note(self, headers: Any) -> None:
        """Record X-MBX-ORDER-COUNT-10S / -1D of a reply (their windows: the ones holding now)."""
        now = self._now()
        c10, c1d = _count(headers, "X-MBX-ORDER-COUNT-10S"), _count(headers, "X-MBX-ORDER-COUNT-1D")
        if c10 or c1d:
            self._r.eval(_NOTE, 1, self._key, c10, window_start(now, WINDOW_10S), c1d, window_start(now, DAY))

    def exceeded(self, retry_after: float) -> None:
        """-1015: no entry for `retry_after` seconds."""
        self._r.eval(_HOLD, 1, self._key, repr(self._now() + retry_after))

    def counts(self) -> OrderCounts:
        """The shared counts as last reported."""
        return self._parse(self._r.hgetall(self._key))

    @staticmethod
    def _parse(raw: dict) -> OrderCounts:
        h = {_text(k): _text(v) for k, v in raw.items()}
        return OrderCounts(count_10s=int(h.get("c10", 0)), window_10s=int(h.get("w10", 0)),
                           count_1d=int(h.get("c1d", 0)), day=int(h.get("d", 0)), hold_until=float(h.get("hold", 0)))

    def prime(self, raw: dict) -> None:
        """The hash as read in another round trip (the signal's gate): `entry_wait` uses it while it is fresh."""
        self._cached, self._read_at = self._parse(raw), self._now()

    def entry_wait(self) -> float:
        """Seconds an entry must wait (0: it may be sent now): from the counts read with the signal's gate when
        they are under FRESH_SEC old, else read now."""
        now = self._now()
        c = self._cached if now - self._read_at <= FRESH_SEC else None
        self._cached = None   # one entry per gate read
        return entry_wait(c or self.counts(), now, self.limit_10s, self.limit_1d, self.reserve)
