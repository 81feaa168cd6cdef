"""A REST weight budget (pure: time is an argument, no I/O).

Binance allows 6,000 request weight a minute per IP, shared by every process of the stack. A process that polls
(the position engine's REST fallback) takes its queries from a token bucket that holds at most `burst` weight and
refills at `(per_min - burst) / 60` a second, so that in ANY 60 s window it spends at most
`burst + (per_min - burst) = per_min`. On top of that, the IP-wide usage the exchange reports
(X-MBX-USED-WEIGHT-1M) stops the polling for the rest of that wall-clock minute when it reaches `ip_soft_limit`:
the weight left then belongs to the orders and the exits of the other processes.
"""
from __future__ import annotations

IP_WEIGHT_LIMIT = 6000          # Binance: REQUEST_WEIGHT per minute per IP
IP_SOFT_SHARE = 0.8             # stop optional polling when the IP has used this share of it


def default_burst(per_min: int, weight: int) -> int:
    """A tenth of the minute's budget (at least one query) may be spent at once."""
    return max(weight, per_min // 10)


class WeightBudget:
    """Token bucket of request weight. `take(w, now)` spends `w` if it is there; `charge` spends it anyway (a call
    that had to be made: the bucket goes negative and the next optional query waits longer)."""

    def __init__(self, per_min: int, burst: int, ip_soft_limit: int = int(IP_WEIGHT_LIMIT * IP_SOFT_SHARE)) -> None:
        if per_min <= 0 or burst <= 0 or burst >= per_min:
            raise ValueError(f"budget {per_min}/min with burst {burst}: need 0 < burst < per_min")
        self.per_min, self.burst = per_min, burst
        self.rate = (per_min - burst) / 60.0          # weight per second
        self.ip_soft_limit = ip_soft_limit
        self.tokens = float(burst)
        self._at: float | None = None
        self._ip_used = 0
        self._ip_minute = -1
        self.spent = 0          # weight spent in total (taken + charged)
        self.denied = 0         # optional queries refused

    def _refill(self, now: float) -> None:
        if self._at is not None and now > self._at:
            self.tokens = min(float(self.burst), self.tokens + (now - self._at) * self.rate)
        if self._at is None or now > self._at:
            self._at = now

    def note_ip_usage(self, used_weight: int | None, now: float) -> None:
        """The exchange's X-MBX-USED-WEIGHT-1M as read at wall time `now` (None: not reported)."""
        if used_weight is not None:
            self._ip_used, self._ip_minute = used_weight, int(now // 60)

    def ip_exhausted(self, now: float) -> bool:
        """The IP used (as last reported, in this wall-clock minute) at least the soft limit."""
        return self._ip_minute == int(now // 60) and self._ip_used >= self.ip_soft_limit

    def available(self, weight: int, now: float) -> bool:
        self._refill(now)
        return self.tokens >= weight and not self.ip_exhausted(now)

    def take(self, weight: int, now: float) -> bool:
        """Spend `weight` for an optional query if the budget allows it now."""
        if not self.available(weight, now):
            self.denied += 1
            return False
        self.tokens -= weight
        self.spent += weight
        return True

    def charge(self, weight: int, now: float) -> None:
        """Account for a call that was made regardless of the budget."""
        self._refill(now)
        self.tokens -= weight
        self.spent += weight

    def wait_sec(self, weight: int, now: float) -> float:
        """Seconds until `take(weight)` can succeed (0 = now)."""
        self._refill(now)
        if self.ip_exhausted(now):
            return 60.0 - (now % 60.0)
        return max(0.0, (weight - self.tokens) / self.rate)
