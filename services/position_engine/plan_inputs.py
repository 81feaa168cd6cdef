"""What a plan needs from outside, kept warm by the idle loop so that a signal's path to its order does no
extra I/O: the feed's last bars (the swing window, §2), SYMBOL's mid (a signal far from it is refused, issue 21)
and k, the price ratio between SYMBOL and the feed's symbol (§5), from the two book tickers."""
from __future__ import annotations

import os
import time
from decimal import Decimal

import msgspec

from shared.adapters.agg_feed import FeedUnavailable, TailCache, read_last_bars
from shared.adapters.binance_rest import BinanceClient, BinanceError
from shared.adapters.fee_rate import exit_fee_rate
from shared.domain.bars import BadHeader, Bar
from shared.domain.swings import signal_window, window_extreme
from shared.domain.symbol import basis_k, quote_of
from shared.feed_alerts import feed_read
from shared.runtime import Runtime

K_REFRESH_SEC = 5.0    # wall s between two reads of the books in the idle loop
K_MAX_AGE_SEC = 15.0   # wall s: an older k is read again on the signal's path (the original reads it every time)
K_STALE_OK_SEC = 300.0  # wall s: when the books cannot be read, a k this young is still used (an event says so)
_SLACK_ROWS = 30       # rows after the signal's bar that the cached tail keeps (the feed runs ahead of a late signal)


class BasisUnavailable(RuntimeError):
    """k cannot be read: the open is skipped (the original's LIVE_OPEN_ERROR)."""


class FeedMissing(RuntimeError):
    """AGG_CSV is missing or not in the v2 format: the open is skipped (the original's agg_unavailable)."""


class PlanInputs:
    """The swing window's bars and k for the signal handler."""

    def __init__(self, rt: Runtime, client: BinanceClient, symbol_quote: str) -> None:
        self.rt, self.cfg, self.client = rt, rt.cfg, client
        self.reprice = bool(self.cfg.FEED_SYMBOL) and quote_of(self.cfg.FEED_SYMBOL) != symbol_quote
        self._k: Decimal = Decimal(1)
        self._mid: Decimal = Decimal(0)
        self._k_at = self._k_tried = self._books_clock = 0.0
        self.fee_rate, self.fee_source = exit_fee_rate(client, rt.cfg.EXIT_FEE_RATE_FALLBACK)
        self._bars_key: tuple | None = None
        self._bars: list[Bar] = []
        self._cache: TailCache | None = None
        self._memo: dict[tuple, tuple[Decimal | None, Decimal | None]] = {}
        self.warm()   # k and the feed before the engine says it is ready: a signal right after start needs no read

    # ---- k and SYMBOL's book ---------------------------------------------------------------------------

    def k(self, now: float | None = None) -> Decimal:
        """k for a plan now: 1 when SYMBOL and the feed share their quote, else the cached ratio (read again
        when older than K_MAX_AGE_SEC). BasisUnavailable when the books cannot be read."""
        self._fresh_books(now)
        return self._k if self.reprice else Decimal(1)

    def market(self, now: float) -> tuple[Decimal, Decimal]:
        """(k, SYMBOL's mid) for a signal at `now` (the stack's clock): the books are read again when the cached
        read is older than K_MAX_AGE_SEC of wall time or of the stack's clock (a fast replay moves the market
        minutes in a wall second). BasisUnavailable when the books cannot be read."""
        self._fresh_books(now)
        return (self._k if self.reprice else Decimal(1)), self._mid

    def _fresh_books(self, now: float | None) -> None:
        clock_age = 0.0 if now is None else abs(now - self._books_clock)
        if time.time() - self._k_at <= K_MAX_AGE_SEC and clock_age <= K_MAX_AGE_SEC:
            return
        try:
            self._read_k(now)
        except BasisUnavailable as e:
            if self._k_at <= 0 or time.time() - self._k_at > K_STALE_OK_SEC:
                raise
            # the basis moves by basis points over hours: a k of a few minutes ago prices the plan as well,
            # and the entry's own send decides whether the exchange is there
            self.rt.event("basis_stale", level="warning", k=self._k, age_sec=round(time.time() - self._k_at, 1),
                          reason=str(e))

    def _read_k(self, now: float | None = None) -> None:
        """Read SYMBOL's book (its mid is what a signal is checked against) and, when re-pricing, the feed's."""
        self._k_tried = time.time()
        try:
            book = self.client.book_ticker(self.cfg.SYMBOL)
            if min(book) <= 0:
                raise ValueError(f"{self.cfg.SYMBOL} book without a price: {book}")
            k = basis_k(book, self.client.book_ticker(self.cfg.FEED_SYMBOL)) if self.reprice else Decimal(1)
        except (BinanceError, OSError, ValueError, KeyError, msgspec.DecodeError) as e:
            raise BasisUnavailable(f"k = mid({self.cfg.SYMBOL}) / mid({self.cfg.FEED_SYMBOL}) unavailable: {e}") from None
        self._k, self._mid, self._k_at = k, sum(book) / 2, time.time()
        self._books_clock = self.rt.clock.now() if now is None else now

    # ---- the swing window --------------------------------------------------------------------------------

    def extreme(self, side: str, signal_ts: float) -> Decimal | None:
        """Lowest low (long) / highest high (short) of the SWING_MINS + 1 rows ending at the signal's bar; None
        when the feed has no rows (the stop is then SL_PCT's). A missing or unreadable feed raises
        FeedMissing: the original skips the open then (`agg_unavailable`)."""
        try:
            lo, hi = self._extremes(signal_ts)
        except (FeedUnavailable, BadHeader, OSError) as e:
            raise FeedMissing(f"agg_unavailable: {e}") from None
        return lo if side == "long" else hi

    def _extremes(self, signal_ts: float) -> tuple[Decimal | None, Decimal | None]:
        """(lowest low, highest high) of the signal's window, memoised per feed version and minute: the idle loop
        computes the current minute's ahead of the signal."""
        bars = self._bars_for(signal_ts)
        memo_key = (self._bars_key, len(bars), int(signal_ts // 60))
        if memo_key not in self._memo:
            w = signal_window(bars, signal_ts, self.cfg.SWING_MINS)
            self._memo = {memo_key: (window_extreme(w, "long"), window_extreme(w, "short"))}
        return self._memo[memo_key]

    def _bars_for(self, signal_ts: float) -> list[Bar]:
        bars = self._tail()
        minute = int(signal_ts // 60)
        if bars and minute < bars[0].ts // 60:   # older than the cached tail: read the whole file, as the original
            bars = read_last_bars(self.cfg.AGG_CSV, 10 ** 9).bars
        return bars

    def _tail(self) -> list[Bar]:
        st = os.stat(self.cfg.AGG_CSV)
        key = (st.st_ino, st.st_size, st.st_mtime_ns)
        if key != self._bars_key:
            if self._cache is None:   # new rows are parsed once, not the whole window at every bar (replay)
                n = self.cfg.SWING_MINS + 1 + max(_SLACK_ROWS, self.cfg.MAX_PEAK_AGE_SEC // 60 + 2)
                self._cache = TailCache(self.cfg.AGG_CSV, n)
            read = self._cache.read()
            self._bars, self._bars_key = read.bars, key
            feed_read(self.rt, read, where="swing_")   # unreadable rows are said (event, throttled alert)
        return self._bars

    def warm(self) -> None:
        """From the idle loop: re-read the feed's tail when the file changed and k when it is due. Errors are left
        to the signal's path, which reports them."""
        try:
            before = self._bars_key
            self._tail()
            if self._bars_key != before:   # a new bar: prime this minute's window (the clock costs a Redis read)
                self._extremes(self.rt.clock.now())
        except (FeedUnavailable, BadHeader, OSError):
            pass  # reported by extreme() when a signal needs the feed
        if time.time() - max(self._k_at, self._k_tried) > K_REFRESH_SEC:
            try:
                self._read_k()
            except BasisUnavailable:
                pass  # reported by k() when a signal needs it
