"""Generated PEAK signal lines for replays, benchmarks and tests (not DeltaScout's): a long at the close of every
bar that is the lowest low of the previous 30 (and, with `shorts`, a short at every highest high), at most one per
`gap` bars; and the slice of a market file a replay of a given UTC day plays. Pure."""
from __future__ import annotations

import calendar
import json
import time
from collections.abc import Sequence

from shared.domain.bars import Bar

LOOKBACK = 30


def peak_lines(bars: Sequence[Bar], start: int, gap: int, shorts: bool = False) -> list[str]:
    """The JSON lines, each stamped at its bar's close (ts + 60), from bar index `start` on."""
    out, last = [], -10**9
    for i in range(max(start, LOOKBACK), len(bars) - 5):
        prior = bars[i - LOOKBACK:i]
        kind = "long" if bars[i].low <= min(b.low for b in prior) else (
            "short" if shorts and bars[i].high >= max(b.high for b in prior) else None)
        if kind is None or i - last < gap:
            continue
        ts = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(bars[i].ts + 60))
        out.append(json.dumps({"ts": ts, "action": "PEAK", "source": "DeltaScout", "kind": kind,
                               "price": float(bars[i].close), "delta": 1.0, "vol": 1.0, "imb": 0.5}))
        last = i
    return out


def day_slice(bars: Sequence[Bar], day: str, hours: float, history: int = 400) -> tuple[int, int, int]:
    """(lo, first, hi): the bars a replay of `hours` from `day` (YYYY-MM-DD, UTC 00:00) plays, `first` its first
    bar, with up to `history` bars before it for the feed's lookback."""
    day0 = calendar.timegm(time.strptime(day, "%Y-%m-%d"))
    first = next(i for i, b in enumerate(bars) if b.ts >= day0)
    return max(0, first - history), first, first + int(hours * 60)
