"""The Prometheus collector: one Source reading -> metric families (names in the README's metrics table)."""
from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from services.executorctl.ctx import PROCESSES
from services.metrics.audit import Histogram
from services.metrics.source import Source
from shared.domain.position import LIVE_STATUSES

PHASES = ("FLAT", *LIVE_STATUSES)
# Loss limits (issue 22a): exported when the running configuration has them.
LOSS_LIMITS = {"MAX_DAILY_LOSS_USD": "executor_loss_limit_daily_usd",
               "MAX_CONSECUTIVE_LOSSES": "executor_loss_limit_consecutive_losses",
               "MAX_TRADES_PER_DAY": "executor_loss_limit_trades_per_day"}


def _g(name: str, doc: str, value: float | Decimal | None = None, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, doc, labels=list(labels) if labels else None)
    if value is not None and not labels:
        g.add_metric([], float(value))
    return g


class ExecutorCollector:
    """Collects at scrape time from a cached Source reading."""

    def __init__(self, source: Source) -> None:
        self.source = source

    def collect(self) -> Iterator[Metric]:
        doc = self.source.reading()
        yield _g("executor_redis_up", "1 when Redis answered the last reading", 1 if doc.get("redis_up") else 0)
        if not doc.get("redis_up"):
            return
        yield _g("executor_redis_persistence_enabled", "1 when Redis persists (AOF on or RDB snapshots)",
                 1 if doc["redis_persistence"] else 0)
        yield from self._processes(doc)
        yield from self._position(doc)
        yield from self._protection(doc)
        yield from self._flow(doc)
        yield from self._exchange(doc)
        yield from self._watchdog(doc)
        yield from self._results(doc)

    def _processes(self, doc: dict[str, Any]) -> Iterator[Metric]:
        up = _g("executor_process_up", "1 while the process's heartbeat is fresh", labels=("process",))
        age = _g("executor_process_heartbeat_age_seconds", "seconds since the process's last heartbeat",
                 labels=("process",))
        for p in PROCESSES:
            hb = doc["heartbeats"][p]
            up.add_metric([p], 1 if hb["up"] else 0)
            if hb["age"] is not None:
                age.add_metric([p], hb["age"])
        yield up
        yield age

    def _position(self, doc: dict[str, Any]) -> Iterator[Metric]:
        p = doc["position"]
        phase = _g("executor_position_phase", "1 for the position's current phase (FLAT: no position)",
                   labels=("phase",))
        for ph in PHASES:
            phase.add_metric([ph], 1 if (p["status"] if p else "FLAT") == ph else 0)
        yield phase
        held, covered = doc["held"], doc["covered"]
        yield _g("executor_position_held_qty", "base quantity the exits still have to sell or buy back", held)
        yield _g("executor_position_stop_covered_qty", "held quantity covered by the position's resting stops",
                 covered)
        ratio = (covered / held) if held > 0 else Decimal(1)
        yield _g("executor_position_stop_coverage_ratio",
                 "covered / held (1 when nothing is held: nothing to protect)", ratio)
        if p is not None:
            yield _g("executor_position_stop_price", "the position's current stop price", p["stop"])
            yield _g("executor_position_entry_price", "average entry price (planned before the fill)",
                     p["avg_entry"] or p["entry_planned"])
            if "unrealised_quote" in p:
                yield _g("executor_position_unrealised_pnl_quote", "unrealised PnL at the book, in the quote asset",
                         p["unrealised_quote"])
                yield _g("executor_position_unrealised_r", "unrealised PnL in R (multiples of the risk)",
                         p["unrealised_r"])
        yield _g("executor_cooldown_remaining_seconds", "seconds of cooldown left", doc["cooldown_left_sec"])
        yield _g("executor_lock_remaining_seconds", "seconds of entry lock left", doc["lock_left_sec"])

    def _protection(self, doc: dict[str, Any]) -> Iterator[Metric]:
        t = self.source.tally
        yield _g("executor_unprotected_seconds", "seconds some held coins have had no resting stop (0: all covered)",
                 doc["unprotected_sec"])
        yield _g("executor_last_trade_unprotected_worst_seconds",
                 "the last filled trade's longest window with coins not covered by a stop", t.last_trade_worst())
        yield _hist("executor_fill_to_first_stop_seconds", "entry fill -> first exit leg resting (audit trail)",
                    t.fill_to_first_stop)
        yield _hist("executor_stop_move_seconds", "stop move recorded -> the moved stop resting (stop_move -> stop_move_window)",
                    t.stop_move)

    def _flow(self, doc: dict[str, Any]) -> Iterator[Metric]:
        sig = CounterMetricFamily("executor_signals", "signals by outcome (traded, ignored, aborted, rejected) "
                                  "and reason, counted from the streams", labels=["outcome", "reason"])
        for (outcome, reason), n in sorted(self.source.tally.signals.items()):
            sig.add_metric([outcome, reason], n)
        yield sig
        length = _g("executor_stream_length", "entries in the stream", labels=("stream",))
        lag = _g("executor_stream_group_lag", "entries not yet delivered to the group", labels=("stream", "group"))
        pending = _g("executor_stream_group_pending", "delivered, not acknowledged", labels=("stream", "group"))
        for s in doc["streams"]:
            length.add_metric([s["stream"]], s["length"])
            for g in s["groups"]:
                if g["lag"] is not None:
                    lag.add_metric([s["stream"], g["group"]], g["lag"])
                pending.add_metric([s["stream"], g["group"]], g["pending"] or 0)
        yield length
        yield lag
        yield pending

    def _exchange(self, doc: dict[str, Any]) -> Iterator[Metric]:
        ex = doc["exchange"]
        yield _g("executor_exchange_up", "1 when the exchange answered the last reading", 1 if ex["reachable"] else 0)
        if ex["reachable"]:
            yield _g("executor_exchange_open_orders", "open orders of SYMBOL on the exchange", len(ex["open_orders"]))
            yield _g("executor_exchange_missing_orders", "orders the state expects that are not open",
                     len(ex["missing"]))
        if doc["used_weight"] is not None:
            yield _g("executor_exchange_used_weight_1m", "the IP's REST request weight used this minute "
                     "(X-MBX-USED-WEIGHT-1M of the last reading)", doc["used_weight"])
        order_count = _order_count(doc)
        if order_count is not None:
            yield _g("executor_exchange_order_count", "orders placed in the exchange's current window "
                     "(X-MBX-ORDER-COUNT-*, as a trading process last saw it)", order_count)
        bo = doc["backoff"]
        c = CounterMetricFamily("executor_exchange_rate_limited", "HTTP 429/418 answers that set the shared back-off")
        c.add_metric([], bo["hits"])
        yield c
        yield _g("executor_exchange_backoff_active", "1 while the shared 429/418 back-off holds requests",
                 1 if bo["active"] else 0)
        yield _g("executor_exchange_backoff_remaining_seconds", "seconds of back-off left", bo["left_sec"])
        us = doc["heartbeats"]["user_stream"]
        yield _g("executor_user_stream_connected", "1 while user_stream is subscribed to the exchange",
                 1 if us["up"] and us["info"].get("connected") else 0)
        last = us["info"].get("last_event_at")
        if last:
            yield _g("executor_user_stream_last_event_age_seconds", "seconds since the stream's last event",
                     max(0.0, time.time() - float(last)))

    def _watchdog(self, doc: dict[str, Any]) -> Iterator[Metric]:
        f = CounterMetricFamily("executor_watchdog_findings", "watchdog findings by invariant and severity",
                                labels=["check", "severity"])
        for (check, sev), n in sorted(self.source.tally.findings.items()):
            f.add_metric([check, sev], n)
        yield f
        h = doc["halt"]
        halt = _g("executor_halted", "1 while the halt flag is set (no new entries); labels say why",
                  labels=("reason", "by"))
        halt.add_metric([str(h.get("reason", "")) if h else "", str(h.get("by", "")) if h else ""], 1 if h else 0)
        yield halt
        cfg = self.source.ctx.cfg
        for setting, name in LOSS_LIMITS.items():
            v = getattr(cfg, setting, None)
            if v is not None:
                yield _g(name, f"the {setting} setting (0: off)", v)

    def _results(self, doc: dict[str, Any]) -> Iterator[Metric]:
        res = doc["results"]
        pnl = _g("executor_realised_pnl_quote", "realised net PnL of closed trades (executorctl report)",
                 labels=("period",))
        fees = _g("executor_fees_quote", "fees paid by closed trades, in the quote asset", labels=("period",))
        for period in ("today", "all"):
            pnl.add_metric([period], float(res[_P[period]]["net_pnl"]))
            fees.add_metric([period], float(res[_P[period]]["fees_quote"]))
        yield pnl
        yield fees
        by = CounterMetricFamily("executor_trades", "closed trades by exit reason", labels=["reason"])
        counts: dict[str, int] = {}
        for r in res["rows"]:
            counts[r.reason or "unknown"] = counts.get(r.reason or "unknown", 0) + 1
        for reason, n in sorted(counts.items()):
            by.add_metric([reason], n)
        yield by
        wr = res["total"]["win_rate"]
        if wr is not None:
            yield _g("executor_win_rate_ratio", "share of closed trades with a positive net PnL", wr)


_P = {"today": "today", "all": "total"}


def _order_count(doc: dict[str, Any]) -> int | None:
    """The highest order count a trading process reported in its heartbeat (issue 22c's order-count headers)."""
    seen = [hb["info"].get("order_count") for hb in doc["heartbeats"].values()]
    seen = [int(v) for v in seen if isinstance(v, (int, float))]
    return max(seen) if seen else None


def _hist(name: str, doc: str, h: Histogram) -> HistogramMetricFamily:
    buckets = [(repr(b), h.counts[i]) for i, b in enumerate(h.buckets)] + [("+Inf", h.counts[-1])]
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=h.total)
