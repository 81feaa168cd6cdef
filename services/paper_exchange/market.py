"""Replay of minute bars as price points, and the feed file the product reads (never the future).

Each bar becomes 4 price points at bar_ts + 0/15/30/45 s: open (= previous close), then low then
high if the bar closed up (else high then low), then close. A bar's feed row is appended when
market time reaches bar_ts + 60. When the bar's range does not hold the previous close, the move to
its first extreme is a gap (nothing traded in between; `Replay.next_is_gap`).
"""
from __future__ import annotations

import os
from decimal import Decimal
from pathlib import Path

from shared.domain.bars import AGG_HEADER_LINE, Bar, format_row
from services.paper_exchange.persist import Cursor

POINT_OFFSETS_S = (0, 15, 30, 45)


def bar_points(bar: Bar, prev_close: Decimal) -> list[Decimal]:
    """The 4 prices of a bar: open, the near extreme, the far extreme, close."""
    extremes = (bar.low, bar.high) if bar.close >= prev_close else (bar.high, bar.low)
    return [prev_close, *extremes, bar.close]


def gapped(bar: Bar, prev_close: Decimal) -> bool:
    """True when the bar's [low, high] does not hold the previous close: the prices in between were not traded,
    and the bar's first trade is its near extreme (high after a fall, low after a rise)."""
    return not bar.low <= prev_close <= bar.high


def start_index(bars: list[Bar], start_ts: int | None, history_bars: int) -> int:
    """Index of the first bar to replay: the first with ts >= start_ts, else the bar after the history."""
    if start_ts is None:
        return min(history_bars, max(len(bars) - 1, 0))
    for i, b in enumerate(bars):
        if b.ts >= start_ts:
            return i
    return len(bars) - 1


class FeedWriter:
    """Appends completed bars to the feed CSV, flushing each row so tailers see it at once."""

    def __init__(self, path: Path):
        self.path = path

    def ensure(self, bars: list[Bar]) -> None:
        """Make the feed hold exactly header + `bars`: append what is missing when the file already
        holds a prefix of them (a restart: tailers keep their file), else rewrite it atomically."""
        want = [AGG_HEADER_LINE] + [format_row(b) for b in bars]
        try:
            have = self.path.read_text(encoding="utf-8").splitlines()
        except FileNotFoundError:
            have = []
        if have and len(have) <= len(want) and have == want[:len(have)]:
            with open(self.path, "a", encoding="utf-8") as f:
                f.writelines(line + "\n" for line in want[len(have):])
                f.flush()
            return
        self.rewrite(bars)

    def rewrite(self, bars: list[Bar]) -> None:
        """Start the feed afresh (header + `bars`), atomically."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(AGG_HEADER_LINE + "\n")
            f.writelines(format_row(b) + "\n" for b in bars)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def append(self, bar: Bar) -> None:
        """Append one completed bar."""
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(format_row(bar) + "\n")
            f.flush()


class Replay:
    """Steps through the bars point by point; pure apart from the feed file it appends to."""

    def __init__(self, bars: list[Bar], first: int, history_bars: int, feed: FeedWriter, cursor: Cursor | None = None):
        if not bars:
            raise ValueError("market file has no bars")
        self.bars = bars
        self.first = first
        self.history_bars = history_bars
        self.feed = feed
        # Fresh start: the first bar's open (point 0) is the starting price, already "played".
        self.cursor = cursor or Cursor(bar=first, point=1)

    def start_price(self) -> Decimal:
        """The price at the start of the first replayed bar (the previous bar's close)."""
        return self._prev_close(self.first)

    def start_ms(self) -> int:
        """Market time at the start of the replay."""
        return self.bars[self.first].ts * 1000

    def _prev_close(self, i: int) -> Decimal:
        return self.bars[i - 1].close if i > 0 else self.bars[0].avg_price

    def write_feed_so_far(self) -> None:
        """The feed = history before the first replayed bar plus every bar completed since."""
        lo = max(0, self.first - self.history_bars)
        self.feed.ensure(self.bars[lo:self.completed()])

    def completed(self) -> int:
        """Index one past the last completed bar (market time has reached its ts + 60)."""
        c = self.cursor
        if c.done:
            return len(self.bars)
        return c.bar if c.point >= 1 else c.bar - 1

    def next_ts_ms(self) -> int | None:
        """Market time of the next point (None at the end of the data)."""
        if self.cursor.done:
            return None
        return (self.bars[self.cursor.bar].ts + POINT_OFFSETS_S[self.cursor.point]) * 1000

    def next_is_gap(self) -> bool:
        """True when the next point jumps without trading in between: point 1 (the near extreme) of a gapped bar."""
        c = self.cursor
        return not c.done and c.point == 1 and gapped(self.bars[c.bar], self._prev_close(c.bar))

    def peek(self) -> Decimal | None:
        """The price of the next point, without playing it (None at the end of the data)."""
        c = self.cursor
        if c.done:
            return None
        return bar_points(self.bars[c.bar], self._prev_close(c.bar))[c.point]

    def step(self) -> tuple[Decimal, int] | None:
        """Play the next point: (price, market ms), writing the previous bar's row when a bar completes."""
        c = self.cursor
        if c.done:
            return None
        if c.point == 0 and c.bar > self.first:
            self.feed.append(self.bars[c.bar - 1])
        bar = self.bars[c.bar]
        price = bar_points(bar, self._prev_close(c.bar))[c.point]
        ts_ms = (bar.ts + POINT_OFFSETS_S[c.point]) * 1000
        self._advance()
        return price, ts_ms

    def _advance(self) -> None:
        c = self.cursor
        if c.point < 3:
            c.point += 1
        elif c.bar + 1 < len(self.bars):
            c.bar, c.point = c.bar + 1, 0
        else:
            # The last bar completes when its 45 s point has played: no later data will come.
            self.feed.append(self.bars[c.bar])
            c.done = True
