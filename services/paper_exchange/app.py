"""The paper exchange application: engine + replay + faults + persistence behind one lock.

HTTP-agnostic: `server.py` turns requests into `Request` and sends back `Response`.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from shared.adapters.market_files import load_bars
from services.paper_exchange import basis, journal, persist
from services.paper_exchange.clock import ClockPublisher
from services.paper_exchange.engine import Engine
from services.paper_exchange.faults import FaultBook
from services.paper_exchange.market import FeedWriter, Replay, start_index
from services.paper_exchange.settings import Settings, market_csv_path

log = logging.getLogger("paper_exchange")


@dataclass
class Request:
    """One HTTP request, raw strings kept for signature checks."""
    method: str
    path: str
    query: str
    body: str
    headers: Any
    client_ip: str = "127.0.0.1"
    received_at: float = 0.0  # wall time the whole request had been read (benchmarks: order received)


@dataclass
class Response:
    """Status, JSON-able payload, extra headers, and how long to hold the reply (fault injection)."""
    status: int
    payload: Any
    headers: dict[str, str] = field(default_factory=dict)
    hold_s: float = 0.0


class PaperApp:
    """Owns the state; every mutation happens under `self.lock` and is persisted before replying."""

    def __init__(self, s: Settings):
        self.s = s
        self.lock = threading.RLock()
        self.faults = FaultBook()
        self.speed = s.speed
        self.placed_wall: dict[int, float] = {}  # order id -> monotonic time placed (transient_2013)
        # order id -> wall time its POST had been read by the server: lets a benchmark measure "signal ->
        # order received by the exchange" (admin only, not journaled, lost on restart).
        self.received_wall: dict[int, float] = {}
        self.state_path = Path(s.state_fn)
        market_path, self.market_label = market_csv_path(s)
        self.market_file = str(market_path)
        bars, bad = load_bars(market_path)
        if bad:
            log.warning("skipped %d bad rows in %s (first: line %d: %s)", len(bad), market_path, *bad[0])
        self.replay, self.engine, seq = self._load(bars, FeedWriter(Path(s.feed_csv)))
        self.journal = journal.Journal(self.state_path.with_name(self.state_path.name + ".journal"), seq, s.fsync)
        self.cmd = journal.JournaledEngine(self.engine, self.journal)
        self.replay.write_feed_so_far()
        self.clock = ClockPublisher(s.clock_redis_url, s.exec_prefix, s.lockstep)
        self.clock.publish(self.engine.st.market_ms)
        self.snapshot()
        self._wake = threading.Event()
        self._stop = threading.Event()
        log.info("paper exchange: %s (%s), %d bars, replay at bar %d, last %s, speed %s",
                 market_path, self.market_label, len(bars), self.replay.cursor.bar, self.engine.st.last, self.speed)

    def _load(self, bars: list, feed: FeedWriter) -> tuple[Replay, Engine, int]:
        """Fresh state, or the snapshot plus the journal written after it."""
        snap = persist.load(self.state_path)
        jpath = self.state_path.with_name(self.state_path.name + ".journal")
        first = start_index(bars, self.s.start_ts, self.s.history_bars)
        if snap is None:
            if jpath.exists() and jpath.stat().st_size:
                log.warning("%s: journal without a snapshot ignored (fresh start)", jpath)
            replay = Replay(bars, first, self.s.history_bars, feed)
            last, feed_last = self._priced(replay.start_price())
            engine = Engine.fresh(self.s, last, replay.start_ms(), feed_last)
            return replay, engine, 0
        if snap.engine.symbol != self.s.symbol:
            raise SystemExit(f"{self.state_path}: state is for {snap.engine.symbol}, SYMBOL is {self.s.symbol}")
        engine = Engine(self.s, snap.engine)
        entries = journal.read(jpath, snap.seq)
        cursor = journal.replay(engine, entries) or snap.cursor
        log.info("restored %s: %d orders, %d journaled commands re-applied, cursor bar %d point %d",
                 self.state_path, len(engine.st.orders), len(entries), cursor.bar, cursor.point)
        if cursor.bar >= len(bars):
            raise SystemExit(f"{self.state_path} (PAPER_STATE_FN) was replaying bar {cursor.bar} of "
                             f"{snap.market_file}, but PAPER_MARKET_CSV has {len(bars)} bars: "
                             "use the same market file or remove the state file")
        replay = Replay(bars, min(first, cursor.bar), self.s.history_bars, feed, cursor)
        return replay, engine, entries[-1].seq if entries else snap.seq

    def _priced(self, feed_price: Decimal) -> tuple[Decimal, Decimal | None]:
        """(SYMBOL's price, the feed symbol's or None) for a price of the market file (PAPER_BASIS_BPS)."""
        return basis.point(feed_price, self.s.basis_bps, self.s.tick_size)

    def snapshot(self) -> None:
        """Write the whole state atomically, then empty the journal (call with the lock held)."""
        persist.save(self.state_path, persist.Snapshot(engine=self.engine.st, cursor=self.replay.cursor,
                                                        market_file=self.market_file, seq=self.journal.seq))
        self.journal.truncate()

    def commit(self) -> None:
        """After a mutation: the journal already made it durable; snapshot every `snapshot_every` commands."""
        if self.journal.pending >= self.s.snapshot_every:
            self.snapshot()

    def close(self) -> None:
        """Final snapshot and journal close (on shutdown)."""
        with self.lock:
            self.snapshot()
            self.journal.close()

    # ---- market driving ----------------------------------------------------------------------

    def advance(self, points: int | None = None, to_ts: int | None = None, until_active: bool = False) -> int:
        """Play `points` replay points, or every point up to market time `to_ts` (epoch s). `until_active`: stop
        after the first point that triggers or fills an order (`Engine.acts_at`). Returns how many."""
        n = 0
        with self.lock:
            while points is None or n < points:
                nxt = self.replay.next_ts_ms()
                if nxt is None or (to_ts is not None and nxt > to_ts * 1000):
                    break
                gap = self.replay.next_is_gap()  # a gapped bar: the prices up to its first trade were not traded
                active = until_active and self.engine.acts_at(self._priced(self.replay.peek())[0], gap)
                feed_price, ts_ms = self.replay.step()
                price, feed = self._priced(feed_price)
                self.cmd.on_price(price, ts_ms, self.replay.cursor, durable=False, gap=gap, feed=feed)
                self.clock.publish(ts_ms)
                n += 1
                if active:
                    break
            self.journal.sync_now()  # one disk sync for the whole batch, before anyone is told
            if self.replay.cursor.done and n:
                log.info("replay reached the end of the market data; prices stay at %s", self.engine.st.last)
            self.commit()
        return n

    def push_price(self, price: Decimal | None, gap: bool = False, feed_price: Decimal | None = None) -> None:
        """An operator/test price point at the current market time (`gap`: a jump, no trades in between):
        SYMBOL's `price` (the feed symbol's derived from it), or the feed symbol's `feed_price` (SYMBOL's
        derived from it)."""
        s = self.s
        if feed_price is not None:
            price, feed = self._priced(feed_price)
        else:
            assert price is not None
            feed = None if s.basis_bps == 0 else basis.to_feed(price, s.basis_bps, s.tick_size)
        with self.lock:
            self.cmd.on_price(price, self.engine.st.market_ms, self.replay.cursor, gap=gap, feed=feed)
            self.clock.publish(self.engine.st.market_ms)
            self.commit()

    def set_speed(self, speed: float) -> None:
        """Change the replay speed (0 = manual only) and wake the replay thread."""
        self.speed = speed
        self._wake.set()

    def run_replay(self) -> None:
        """Replay thread body: one point every 15/speed wall seconds until stopped. The interval is measured from
        the previous point's deadline, so the time spent playing a point is not added to it (a late point is
        caught up, but never more than a second of lag is made up in a burst)."""
        next_at = time.monotonic()
        while not self._stop.is_set():
            speed = self.speed
            if speed <= 0:
                self._wake.wait(None)
                self._wake.clear()
                next_at = time.monotonic()
                continue
            next_at += 15.0 / speed
            woke = self._wake.wait(max(0.0, next_at - time.monotonic()))
            self._wake.clear()
            if self._stop.is_set():
                return
            if woke:
                next_at = time.monotonic()  # speed changed: the interval restarts now
                continue
            if self.replay.cursor.done:
                self._stop.wait(1.0)
                continue
            self.advance(points=1)
            next_at = max(next_at, time.monotonic() - 1.0)

    def stop(self) -> None:
        """Stop the replay thread."""
        self._stop.set()
        self._wake.set()

    def mark_placed(self, order_id: int) -> None:
        """Remember when (wall, monotonic) an order was placed, for the transient_2013 fault."""
        self.placed_wall[order_id] = time.monotonic()
