"""The dashboard's document: the metrics process's reading (`executorctl status` + heartbeats, coverage and
`executorctl report`'s trades) plus what a person reads on the page: the audit trail, the alerts and the
current trade's chart (bars of aggregated.csv, the plan's levels, the stop as it moved, the fills)."""
from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path
from typing import Any

import redis

from services.executorctl.ctx import Ctx, decode_row, entry_time, jsonable
from services.executorctl.trade_rows import equity
from services.metrics.source import Source
from shared.adapters.agg_feed import FeedUnavailable, read_last_bars
from shared.domain.bars import BadHeader
from shared.domain.messages import Alert, Event

AUDIT_ROWS = 300
ALERT_ROWS = 50
CHART_BARS = 240


class DashboardView:
    """Builds the page's JSON document; `fingerprint()` is the cheap check of whether anything changed."""

    def __init__(self, ctx: Ctx, cache_sec: float) -> None:
        self.ctx = ctx
        self.source = Source(ctx, cache_sec)

    def fingerprint(self) -> str:
        """Changes whenever the state, the halt flag, the audit trail or the alerts change (one round trip)."""
        c = self.ctx
        pipe = c.r.pipeline(transaction=False)
        pipe.get(c.key("state"))
        pipe.get(c.key("halt"))
        for s in ("events", "alerts", "positions"):
            pipe.xrevrange(c.key(s), "+", "-", count=1)
        h = hashlib.blake2b(digest_size=12)
        for part in pipe.execute():
            h.update(repr(part).encode())
        return h.hexdigest()

    def document(self, force: bool = False) -> dict[str, Any]:
        """Everything the page shows, JSON-safe (Decimals as strings)."""
        try:
            doc = dict(self.source.reading(force=force))
        except redis.RedisError as e:
            return {"redis_up": False, "redis_error": type(e).__name__}
        if not doc.get("redis_up"):
            return jsonable(doc)
        res = doc.pop("results")
        doc["closed_trades"] = [_trade(r) for r in res["rows"]]
        doc["totals"] = {k: _q4(v) for k, v in res["total"].items()}
        doc["equity"] = [{"time": int(t), "value": v} for t, v, _dd in equity(res["rows"])]
        doc["audit"] = self._audit()
        doc["alerts"] = self._alerts()
        doc["chart"] = self._chart(doc)
        return jsonable(doc)

    def _audit(self) -> list[dict[str, Any]]:
        rows = self.ctx.r.xrevrange(self.ctx.key("events"), "+", "-", count=AUDIT_ROWS)
        out = []
        for eid, fields in rows:
            m = decode_row(fields)
            if isinstance(m, Event):
                out.append({"wall": entry_time(eid), "at": m.at, "service": m.service, "kind": m.kind,
                            "trade_key": m.trade_key, "data": m.data})
        return out

    def _alerts(self) -> list[dict[str, Any]]:
        rows = self.ctx.r.xrevrange(self.ctx.key("alerts"), "+", "-", count=ALERT_ROWS)
        return [{"at": m.at, "check": m.check, "severity": m.severity, "message": m.message,
                 "trade_key": m.trade_key} for _id, f in rows if isinstance(m := decode_row(f), Alert)]

    def _chart(self, doc: dict[str, Any]) -> dict[str, Any]:
        """Bars (feed prices) and, for the current or last trade, its levels, stops and fills re-priced to the
        feed by the plan's k (SYMBOL / feed)."""
        try:
            bars = read_last_bars(Path(self.ctx.cfg.AGG_CSV), CHART_BARS).bars
        except (FeedUnavailable, BadHeader) as e:
            return {"error": str(e), "bars": []}
        candles, prev = [], None
        for b in bars:
            o = prev if prev is not None else b.avg_price
            candles.append({"time": b.ts, "open": o, "high": max(b.high, o), "low": min(b.low, o), "close": b.close})
            prev = b.close
        tk = (doc["position"] or {}).get("trade_key") or ((doc.get("last_closed") or {}).get("trade_key") or "")
        return {"bars": candles, "trade_key": tk, **(_trade_marks(tk, doc["audit"]) if tk else {})}


def _trade_marks(tk: str, audit: list[dict[str, Any]]) -> dict[str, Any]:
    evs = [e for e in reversed(audit) if e["trade_key"] == tk]
    plan = next((e["data"] for e in evs if e["kind"] == "entry_planned"), None)
    k = Decimal(str(plan.get("k", "1"))) if plan else Decimal(1)
    feed = lambda v: (Decimal(str(v)) / k).quantize(Decimal("0.01")) if v not in (None, "") else None
    levels = {}
    if plan:
        levels = {"entry": feed(plan.get("entry")), "tp1": feed(plan.get("tp1")), "tp2": feed(plan.get("tp2")),
                  "initial stop": feed(plan.get("sl"))}
    stops, fills = [], []
    if plan:
        stops.append({"time": int(next(e["at"] for e in evs if e["kind"] == "entry_planned")), "value": feed(plan["sl"])})
    for e in evs:
        d = e["data"]
        if e["kind"] == "stop_move":
            stops.append({"time": int(e["at"]), "value": feed(d.get("stop"))})
        elif e["kind"] == "entry_filled":
            fills.append({"time": int(e["at"]), "kind": "entry", "price": feed(d.get("avg_entry")),
                          "text": f"entry {d.get('qty')}"})
        elif e["kind"] == "leg_settled" and d.get("filled") not in (None, "0", 0):
            fills.append({"time": int(e["at"]), "kind": "exit", "price": None,
                          "text": f"{d.get('leg')} {d.get('reason', '')}"})
    return {"levels": levels, "stops": stops, "fills": fills}


def _q4(v: Any) -> Any:
    """Money sums to 4 decimals for the page (report's totals keep every digit of the fees)."""
    return v.quantize(Decimal("0.0001")) if isinstance(v, Decimal) and v.as_tuple().exponent < -4 else v


def _trade(r: Any) -> dict[str, Any]:
    return {"trade_key": r.trade_key, "side": r.side, "opened_at": r.opened_at, "closed_at": r.closed_at,
            "avg_entry": r.avg_entry, "entry_qty": r.entry_qty, "avg_exit": r.avg_exit, "fees_quote": _q4(r.fees_quote),
            "gross_pnl": r.gross_pnl, "net_pnl": r.net_pnl, "net_r": r.net_r, "reason": r.reason,
            "duration_sec": r.duration_sec}
