"""Admin endpoints (unsigned JSON, loopback only): state, orders, price, advance, speed, faults, expire."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Any

import msgspec

from services.paper_exchange import views
from services.paper_exchange.app import PaperApp, Request, Response
from services.paper_exchange.model import ApiError

# Binance's expiryReason values (enums.md "Expiry Reasons") the exchange can give an order it expires itself.
EXPIRY_REASONS = ("EXCHANGE_CANCELED", "INSUFFICIENT_LIQUIDITY", "EXECUTION_RULE_PRICE_RANGE_EXCEEDED", "REJECTED")


class BadAdmin(ValueError):
    """A malformed admin request (HTTP 400 with the reason)."""


def _json(req: Request) -> dict[str, Any]:
    if not req.body.strip():
        return {}
    try:
        body = msgspec.json.decode(req.body.encode())
    except msgspec.DecodeError as e:
        raise BadAdmin(f"body is not JSON: {e}") from e
    if not isinstance(body, dict):
        raise BadAdmin("body must be a JSON object")
    return body


def state(app: PaperApp, body: dict[str, Any]) -> Any:
    """GET /admin/state."""
    with app.lock:
        st, c = app.engine.st, app.replay.cursor
        bid, ask = app.engine.book()
        return {
            "symbol": app.s.symbol, "market_ts_ms": st.market_ms, "market_ts": st.market_ms // 1000,
            "last": views.d8(st.last), "bid": views.d8(bid), "ask": views.d8(ask),
            "feed_symbol": app.s.feed_symbol, "feed_last": views.d8(app.engine.last_of(app.s.feed_symbol)),
            "basis_bps": str(app.s.basis_bps),
            "replay": {"bar_index": c.bar, "point": c.point, "done": c.done, "bars": len(app.replay.bars),
                       "first_bar": app.replay.first, "completed_bars": app.replay.completed()},
            "speed": app.speed, "market_file": app.market_file, "market_label": app.market_label,
            "feed_csv": app.s.feed_csv, "balances": {b["asset"]: {"free": b["free"], "locked": b["locked"]}
                                                      for b in views.balances(st)},
            "margin": {acct: {a: {"free": views.d8(b.free), "locked": views.d8(b.locked),
                                  "borrowed": views.d8(b.borrowed), "interest": views.d8(b.interest)}
                              for a, b in sorted(w.items())} for acct, w in sorted(st.margin.items())},
            "open_orders": len(app.engine.open_orders()),
        }


def orders(app: PaperApp, body: dict[str, Any]) -> Any:
    """GET /admin/orders: every order ever, with fills and times (the exchange's truth)."""
    with app.lock:
        return [views.order_admin(o, app.s.symbol) for _, o in sorted(app.engine.st.orders.items())]


def received(app: PaperApp, body: dict[str, Any]) -> Any:
    """GET /admin/received: {orderId: wall time its request had been read} for orders placed since start
    (benchmarks measure "signal -> order received by the exchange" with it; not persisted)."""
    with app.lock:
        return {str(k): v for k, v in app.received_wall.items()}


def price(app: PaperApp, body: dict[str, Any]) -> Any:
    """POST /admin/price {"price": "95000.12", "gap": false}: push a price point (matching runs); with
    "gap": true the market jumps there without trading the prices in between. `price` is SYMBOL's (the feed
    symbol's follows through the basis); {"feed_price": ...} instead gives the feed symbol's (SYMBOL's follows)."""
    key = "feed_price" if "feed_price" in body and "price" not in body else "price"
    try:
        p = Decimal(str(body[key]))
    except (KeyError, InvalidOperation) as e:
        raise BadAdmin('expected {"price": "<decimal>"} or {"feed_price": "<decimal>"}') from e
    if not p.is_finite() or p <= 0 or p % app.s.tick_size != 0:
        raise BadAdmin(f"{key} must be positive and a multiple of the tick {app.s.tick_size}")
    gap = bool(body.get("gap", False))
    if key == "price":
        app.push_price(p, gap=gap)
    else:
        app.push_price(None, gap=gap, feed_price=p)
    return state(app, {})


def advance(app: PaperApp, body: dict[str, Any]) -> Any:
    """POST /admin/advance {"points": n} or {"to_ts": epoch_s}, optionally "until_active": true (stop after the
    first point that triggers or fills an order): step the replay deterministically."""
    until = body.get("until_active", False)
    if not isinstance(until, bool):
        raise BadAdmin('"until_active" must be true or false')
    if "points" in body:
        n = app.advance(points=_int(body, "points"), until_active=until)
    elif "to_ts" in body:
        n = app.advance(to_ts=_int(body, "to_ts"), until_active=until)
    else:
        raise BadAdmin('expected {"points": n} or {"to_ts": epoch_seconds}')
    return {"advanced": n, **state(app, {})}


def speed(app: PaperApp, body: dict[str, Any]) -> Any:
    """POST /admin/speed {"speed": x} (0 = manual)."""
    try:
        v = float(body["speed"])
    except (KeyError, TypeError, ValueError) as e:
        raise BadAdmin('expected {"speed": <number >= 0>}') from e
    if v < 0:
        raise BadAdmin("speed must be >= 0")
    app.set_speed(v)
    return {"speed": v}


def faults_post(app: PaperApp, body: dict[str, Any]) -> Any:
    """POST /admin/faults: arm fault counters (see faults.KINDS)."""
    try:
        armed = app.faults.arm(body)
    except (TypeError, ValueError) as e:
        raise BadAdmin(str(e)) from e
    return {"faults": msgspec.to_builtins(armed)}


def faults_get(app: PaperApp, body: dict[str, Any]) -> Any:
    """GET /admin/faults."""
    return {"faults": msgspec.to_builtins(app.faults.listing())}


def expire(app: PaperApp, body: dict[str, Any]) -> Any:
    """POST /admin/expire {"client_order_id": "..." | "order_id": n, "reason": "EXECUTION_RULE_PRICE_RANGE_EXCEEDED",
    "account": "SPOT"}: the exchange expires an open order (status EXPIRED, expiryReason / executionReport eR =
    reason; an OCO leg takes its list along). Journaled like any order change."""
    reason = str(body.get("reason", "EXECUTION_RULE_PRICE_RANGE_EXCEEDED"))
    if reason not in EXPIRY_REASONS:
        raise BadAdmin(f"reason must be one of {', '.join(EXPIRY_REASONS)}")
    oid, cid = body.get("order_id"), body.get("client_order_id")
    if (oid is None) == (cid is None):
        raise BadAdmin('expected {"order_id": n} or {"client_order_id": "..."}')
    with app.lock:
        try:
            o = app.cmd.expire(_int(body, "order_id") if oid is not None else None, cid and str(cid), reason,
                               str(body.get("account", "SPOT")))
        except ApiError as e:
            raise BadAdmin(f"{e.code}: {e.msg}") from e
        finally:
            app.commit()
        return views.order_admin(o, app.s.symbol)


def _int(body: dict[str, Any], key: str) -> int:
    v = body[key]
    if isinstance(v, bool) or not isinstance(v, int) or v < 0:
        raise BadAdmin(f"{key} must be a non-negative integer")
    return v


ROUTES = {
    ("GET", "/admin/state"): state,
    ("GET", "/admin/orders"): orders,
    ("GET", "/admin/received"): received,
    ("POST", "/admin/price"): price,
    ("POST", "/admin/advance"): advance,
    ("POST", "/admin/speed"): speed,
    ("POST", "/admin/faults"): faults_post,
    ("GET", "/admin/faults"): faults_get,
    ("POST", "/admin/expire"): expire,
}


def handle(app: PaperApp, req: Request) -> Response:
    """Run one admin request."""
    fn = ROUTES.get((req.method, req.path))
    if fn is None:
        return Response(404, {"error": f"unknown admin endpoint {req.method} {req.path}",
                              "endpoints": [f"{m} {p}" for m, p in ROUTES]})
    try:
        return Response(200, fn(app, _json(req)))
    except BadAdmin as e:
        return Response(400, {"error": str(e)})
