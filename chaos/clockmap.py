"""Wall clock <-> market clock. A thread samples the market time (the paper exchange's `{prefix}clock` in
Redis, or its /admin/state while Redis is down) every `every` s, with the wall time of the sample. An
exchange record in market time M then happened after the last sample that saw a market time < M, and
before the first sample that saw a market time > M: bounds in wall time."""
from __future__ import annotations

import bisect
import threading
import time

import redis
import requests


class ClockMap:
    def __init__(self, r: redis.Redis, prefix: str, admin_url: str, every: float = 0.05) -> None:
        self.r, self.key, self.admin_url, self.every = r, f"{prefix}clock", admin_url, every
        self.walls: list[float] = []
        self.markets: list[int] = []
        self._stop = threading.Event()
        self._http = requests.Session()
        self._t = threading.Thread(target=self._run, name="clockmap", daemon=True)

    def start(self) -> None:
        self._t.start()

    def stop(self) -> None:
        self._stop.set()
        self._t.join(5)
        self._http.close()

    def _sample(self) -> int | None:
        try:
            v = self.r.get(self.key)
            if v is not None:
                return int(v)
        except (redis.RedisError, ValueError):
            pass
        try:
            return int(self._http.get(self.admin_url + "/state", timeout=0.5).json()["market_ts_ms"])
        except (requests.RequestException, ValueError, KeyError):
            return None

    def _run(self) -> None:
        while not self._stop.is_set():
            m = self._sample()
            w = time.time()
            if m is not None and (not self.markets or m >= self.markets[-1]):
                self.walls.append(w)
                self.markets.append(m)
            self._stop.wait(self.every)

    def market_ms(self) -> int | None:
        return self.markets[-1] if self.markets else None

    def wall_after(self, market_ms: int) -> float | None:
        """A lower bound of the wall time of something that happened at market time `market_ms`: the last
        sample that still saw an earlier market time."""
        i = bisect.bisect_left(self.markets, market_ms)
        return self.walls[i - 1] if i > 0 else None

    def wall_before(self, market_ms: int) -> float | None:
        """An upper bound: the first sample that saw a later market time."""
        i = bisect.bisect_right(self.markets, market_ms)
        return self.walls[i] if i < len(self.markets) else None
