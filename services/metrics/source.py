"""What /metrics shows, read at scrape time from Redis and the exchange: `executorctl status`'s document (one
reading of processes, halt, state, position, open orders and streams), the audit trail tallied incrementally,
the shared back-off, Redis' own health and `executorctl report`'s totals (recomputed only when a trade closed).

A reading is kept METRICS_CACHE_SEC so a scraper polling fast (or several scrapers) costs one reading; it runs
in this separate process on a read-only Redis user, so a slow scrape never slows a stop."""
from __future__ import annotations

import os
import threading
import time
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import msgspec
import redis

from services.executorctl import report, status
from services.executorctl.ctx import PROCESSES, Ctx, decode_row, entry_time
from services.metrics.audit import AuditTally
from shared.adapters.heartbeat import Heartbeat

ZERO = Decimal(0)
# The operator's window runs below the trading processes' CPU priority: on a small host a scrape or a page
# refresh must wait for a stop, never the other way round (bench/bench_window.py measures it).
BACKGROUND_NICE = 10
TALLIED_STREAMS = ("events", "rejects", "alerts")
STOP_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT")


def stop_coverage(doc: dict[str, Any]) -> tuple[Decimal, Decimal]:
    """(quantity the exits must still trade, quantity covered by the position's own stops resting on the
    exchange). Once the legs are planned it is what the live legs have left (the dust below one step, which no
    order can sell, is not counted); before, the whole fill."""
    p = doc.get("position")
    if p is None or not p["filled_qty"]:
        return ZERO, ZERO
    live = [lg for lg in p["legs"] if lg["status"] != "DONE"]
    held = sum((lg["qty"] - lg["filled"] for lg in live), ZERO) if p["legs"] else p["held"]
    expected_stops = {lg["stop_client_id"] for lg in live}
    covered = sum((o["qty"] - o["filled"] for o in doc["exchange"].get("open_orders", [])
                   if o["type"] in STOP_TYPES and o["client_id"] in expected_stops), ZERO)
    return held, covered


def lower_priority(log) -> None:
    """Run this process at BACKGROUND_NICE (a no-op where the OS refuses)."""
    try:
        os.nice(BACKGROUND_NICE)
    except OSError as e:
        log.warning("nice_failed", error=str(e))


class Source:
    """One reading of the stack, refreshed at most every `cache_sec` wall seconds."""

    def __init__(self, ctx: Ctx, cache_sec: float) -> None:
        self.ctx, self.cache_sec = ctx, cache_sec
        self.tally = AuditTally()
        self._cursors = {s: "-" for s in TALLIED_STREAMS}
        self._lock = threading.Lock()
        self._doc: dict[str, Any] = {}
        self._at = 0.0
        self._last_beat: dict[str, float] = {}
        self._unprotected_since: float | None = None
        self._results_key: tuple[int, int, int] | None = None
        self._results: dict[str, Any] = {}

    def reading(self, force: bool = False) -> dict[str, Any]:
        """The latest reading (taken now if the cached one is older than `cache_sec`, or `force`)."""
        with self._lock:
            if force or time.monotonic() - self._at >= self.cache_sec or not self._doc:
                self._doc = self._read()
                self._at = time.monotonic()
            return self._doc

    def _read(self) -> dict[str, Any]:
        try:
            self.ctx.r.ping()
        except redis.RedisError as e:
            return {"redis_up": False, "redis_error": type(e).__name__}
        doc = status.gather(self.ctx)
        doc["redis_up"] = True
        doc["redis_persistence"] = self._persistence()
        doc["heartbeats"] = self._heartbeats()
        doc["backoff"] = self._backoff()
        doc["used_weight"] = self.ctx.client().used_weight
        self._tally()
        held, covered = stop_coverage(doc)
        doc["held"], doc["covered"] = held, covered
        doc["unprotected_sec"] = self._unprotected(held, covered)
        doc["results"] = self._results_now(doc)
        return doc

    def _persistence(self) -> bool:
        """AOF on, or RDB snapshots configured (CONFIG may be refused to a read-only user: then AOF alone)."""
        info = self.ctx.r.info("persistence")
        if int(info.get("aof_enabled", 0)):
            return True
        try:
            save = self.ctx.r.config_get("save").get("save", "")
        except redis.ResponseError:
            return False
        return bool(str(save).strip())

    def _heartbeats(self) -> dict[str, dict[str, Any]]:
        """Per process: up, and the age of its last heartbeat, still growing after its key expired."""
        now = time.time()
        raws = self.ctx.r.mget([self.ctx.key(f"hb:{p}") for p in PROCESSES])
        out: dict[str, dict[str, Any]] = {}
        for p, raw in zip(PROCESSES, raws):
            hb = None
            if raw:
                try:
                    hb = msgspec.json.decode(raw, type=Heartbeat)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    hb = None
            if hb is not None:
                self._last_beat[p] = hb.ts
            last = self._last_beat.get(p)
            age = None if last is None else max(0.0, now - last)
            out[p] = {"up": hb is not None and age is not None and age <= self.ctx.cfg.HEARTBEAT_TTL_SEC,
                      "age": age, "info": hb.info if hb is not None else {}}
        return out

    def _backoff(self) -> dict[str, Any]:
        key = self.ctx.key("backoff")
        until, hits = self.ctx.r.mget([key, f"{key}:hits"])
        left = max(0.0, float(until) - time.time()) if until else 0.0
        return {"active": left > 0, "left_sec": left, "hits": int(hits or 0)}

    def _tally(self) -> None:
        for s in TALLIED_STREAMS:
            key = self.ctx.key(s)
            while True:
                rows = self.ctx.r.xrange(key, self._cursors[s], "+", count=1000)
                for eid, fields in rows:
                    m = decode_row(fields)
                    if m is not None:
                        self.tally.feed(entry_time(eid), m)
                if rows:
                    self._cursors[s] = "(" + rows[-1][0].decode()
                if len(rows) < 1000:
                    break

    def _unprotected(self, held: Decimal, covered: Decimal) -> float:
        """Seconds since some held coins lost (or never had) a resting stop; 0 when all are covered."""
        if held <= 0 or covered >= held:
            self._unprotected_since = None
            return 0.0
        now = time.time()
        if self._unprotected_since is None:
            # Since when, from the audit trail: a stop move under way, or a fill whose legs are not all resting;
            # otherwise (a stop gone from the exchange) from this reading on.
            tw = self.tally.trades.get(self.tally.last_trade)
            if tw is not None and tw.moving:
                since = max(tw.moving.values())
            elif tw is not None and len(tw.legs_placed) < 3:
                since = tw.filled_at
            else:
                since = now
            self._unprotected_since = min(since, now)
        return now - self._unprotected_since

    def _results_now(self, doc: dict[str, Any]) -> dict[str, Any]:
        """`executorctl report`'s rows and totals, rebuilt only when another trade closed."""
        midnight = datetime.fromtimestamp(doc["now"], tz=UTC).replace(hour=0, minute=0, second=0,
                                                                       microsecond=0).timestamp()
        key = (doc["closed_count"], self.ctx.r.xlen(self.ctx.key("positions")), int(midnight))
        if key != self._results_key:
            rows = report.build(self.ctx)
            self._results = {"rows": rows, "total": report.totals(rows),
                             "today": report.totals([r for r in rows if r.closed_at >= midnight])}
            self._results_key = key
        return self._results
