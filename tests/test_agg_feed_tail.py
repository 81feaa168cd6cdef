"""TailCache (the engine's feed tail, parsed incrementally) answers what a full read_last_bars would, on a feed
growing row by row, through partial rows, bad rows and a replaced file."""
from __future__ import annotations

import os
from pathlib import Path

from shared.adapters.agg_feed import TailCache, read_last_bars


def test_tail_cache_equals_a_full_read_as_the_feed_grows(tmp_path: Path, market_file: Path):
    rows = market_file.read_text().splitlines(True)
    feed = tmp_path / "aggregated.csv"
    feed.write_text("".join(rows[:40]))
    cache = TailCache(feed, 25)
    for i in range(40, 260):
        line = "not,a,row\n" if i == 100 else rows[i]
        with open(feed, "a") as f:
            if i % 9 == 0:   # a row half written: not part of the window yet
                f.write(line[:12])
                f.flush()
                assert cache.read() == read_last_bars(feed, 25), i
                line = line[12:]
            f.write(line)
        got = cache.read()
        assert got == read_last_bars(feed, 25), i
    assert got.bars and got.bars[-1].ts > got.bars[0].ts
    replaced = tmp_path / "new.csv"
    replaced.write_text("".join(rows[:30]))
    os.replace(replaced, feed)   # another file (rotation): read whole again
    assert cache.read() == read_last_bars(feed, 25)
