"""Request dispatch: faults, authentication, weight header, the engine lock and persistence."""
from __future__ import annotations

import logging
import threading
import time
from typing import Callable

from services.paper_exchange import admin, api, api_account, api_margin, api_market, api_stream, auth
from services.paper_exchange import params as P
from services.paper_exchange.app import PaperApp, Request, Response
from services.paper_exchange.model import ApiError

log = logging.getLogger("paper_exchange.router")

_LOOPBACK = ("127.", "::1", "::ffff:127.")


class WeightMeter:
    """Usage per counter (header name) in the current window of `now` (X-MBX-USED-WEIGHT-1M and friends): the wall
    clock, as Binance's, or in a lock-step replay the market clock (a replay compresses hours into seconds: a wall
    window would count orders live never sees together, and hold entries live never would)."""

    def __init__(self, window_s: int = 60, now: Callable[[], float] = time.time) -> None:
        self.window_s = window_s
        self._now = now
        self._window: dict[str, int] = {}
        self._used: dict[str, int] = {}
        self._lock = threading.Lock()

    def add(self, weight: int = 1, counter: str = "X-MBX-USED-WEIGHT-1M") -> int:
        """Count `weight` on `counter`; return the window's total."""
        with self._lock:
            window = int(self._now() // self.window_s)
            if self._window.get(counter) != window:
                self._window[counter], self._used[counter] = window, 0
            self._used[counter] += weight
            return self._used[counter]

    def used(self, counter: str = "X-MBX-USED-WEIGHT-1M") -> int:
        """The current window's total on `counter` (0 in a new window)."""
        with self._lock:
            return self._used.get(counter, 0) if self._window.get(counter) == int(self._now() // self.window_s) else 0

    def seconds_left(self) -> float:
        """Seconds until the current window ends."""
        return self.window_s - self._now() % self.window_s


# Binance's documented request weights (spot: IP weight; /sapi: IP or UID weight, each its own header).
_IP, _SAPI_IP, _SAPI_UID = "X-MBX-USED-WEIGHT-1M", "X-SAPI-USED-IP-WEIGHT-1M", "X-SAPI-USED-UID-WEIGHT-1M"
WEIGHTS: dict[tuple[str, str], tuple[str, int]] = {
    ("GET", "/api/v3/ping"): (_IP, 1), ("GET", "/api/v3/time"): (_IP, 1),
    ("GET", "/api/v3/exchangeInfo"): (_IP, 20),
    ("POST", "/api/v3/order"): (_IP, 1), ("GET", "/api/v3/order"): (_IP, 4), ("DELETE", "/api/v3/order"): (_IP, 1),
    ("GET", "/api/v3/openOrders"): (_IP, 6), ("DELETE", "/api/v3/openOrders"): (_IP, 1),
    ("GET", "/api/v3/allOrders"): (_IP, 20), ("GET", "/api/v3/account"): (_IP, 20),
    ("GET", "/api/v3/myTrades"): (_IP, 20), ("POST", "/api/v3/orderList/oco"): (_IP, 1),
    ("GET", "/api/v3/orderList"): (_IP, 4), ("DELETE", "/api/v3/orderList"): (_IP, 1),
    ("POST", "/api/v3/order/cancelReplace"): (_IP, 1),
    ("POST", "/sapi/v1/margin/order"): (_SAPI_UID, 6), ("POST", "/sapi/v1/margin/order/oco"): (_SAPI_UID, 6),
    ("POST", "/sapi/v1/margin/borrow-repay"): (_SAPI_UID, 1500),
    ("GET", "/sapi/v1/margin/maxBorrowable"): (_SAPI_IP, 50),
    ("POST", "/sapi/v1/userListenToken"): (_SAPI_UID, 1),
    ("GET", "/sapi/v1/margin/allOrders"): (_SAPI_IP, 200),
    **api_account.WEIGHTS,
}


# CHANGELOG 2026-03-27 (in force 2026-04-02): these cost no request weight when they succeed (failed ones still do).
ZERO_ON_SUCCESS = frozenset({("POST", "/api/v3/order"), ("DELETE", "/api/v3/order"), ("DELETE", "/api/v3/openOrders"),
                             ("POST", "/api/v3/order/cancelReplace"), ("POST", "/api/v3/orderList/oco"),
                             ("DELETE", "/api/v3/orderList")})
# binance-sdk-margin-trading 8.9.0 (Binance's margin API spec): new order / OCO "Weight: 6(UID) or 1500(UID) when
# sideEffectType is MARGIN_BUY or AUTO_BORROW_REPAY"; an explicit borrow-repay is 1500 once per trade instead.
_BORROWING_SIDE_EFFECTS = frozenset({"MARGIN_BUY", "AUTO_BORROW_REPAY"})


def request_weight(method: str, path: str, p: dict[str, str], ok: bool = False) -> tuple[str, int]:
    """(counter header, weight) of one request, as Binance documents it (`ok`: it succeeded)."""
    if ok and (method, path) in ZERO_ON_SUCCESS:
        return _IP, 0
    if (method, path) in (("POST", "/sapi/v1/margin/order"), ("POST", "/sapi/v1/margin/order/oco")) and \
            p.get("sideEffectType", "").upper() in _BORROWING_SIDE_EFFECTS:
        return _SAPI_UID, 1500
    if (method, path) == ("GET", "/api/v3/openOrders") and not p.get("symbol"):
        return _IP, 80
    if (method, path) == ("GET", "/api/v3/myTrades") and p.get("orderId"):
        return _IP, 5
    if method == "GET" and path in api_market.WEIGHTED:
        return _IP, api_market.weight(path, p)
    return WEIGHTS.get((method, path), (_SAPI_IP, 10) if path.startswith("/sapi/") else (_IP, 1))


class OrderCounter:
    """Orders placed per 10 s and per (UTC) day: Binance's X-MBX-ORDER-COUNT-10S / -1D on order replies, and its
    ORDERS rate limits (PAPER_ORDER_LIMIT_10S / _1D): a new order over either is -1015, HTTP 429 with Retry-After.
    Not modelled: Binance's decrement of the count for orders that fill (faqs/order_count_decrement.md)."""

    def __init__(self, limit_10s: int = 100, limit_1d: int = 200_000, now: Callable[[], float] = time.time) -> None:
        self._10s, self._1d = WeightMeter(10, now), WeightMeter(86400, now)
        self.limits = ((self._10s, limit_10s, "10 SECOND"), (self._1d, limit_1d, "1 DAY"))

    def check(self, n: int) -> Response | None:
        """-1015 (HTTP 429, Retry-After: the window's end) when `n` more orders would exceed a limit."""
        for meter, limit, label in self.limits:
            if meter.used("o") + n > limit:
                retry = max(1, int(meter.seconds_left() + 0.999))
                return Response(429, {"code": -1015, "msg": f"Too many new orders; current limit is {limit} orders "
                                                             f"per {label}."}, {"Retry-After": str(retry)})
        return None

    def add(self, n: int) -> dict[str, str]:
        """Count `n` new orders; the two headers."""
        return {"X-MBX-ORDER-COUNT-10S": str(self._10s.add(n, "o")), "X-MBX-ORDER-COUNT-1D": str(self._1d.add(n, "o"))}


def _rate_limited(status: int, retry: float) -> Response:
    if status == 418:
        msg = f"Way too much request weight used; IP banned until {int((time.time() + retry) * 1000)}."
    else:
        msg = "Too many requests; current limit is 6000 request weight per 1 MINUTE."
    return Response(status, {"code": -1003, "msg": msg},
                    {"Retry-After": str(int(retry) if retry == int(retry) else retry)})


def error(e: ApiError) -> Response:
    """Binance's error body (with `data` for cancelReplace failures)."""
    body = {"code": e.code, "msg": e.msg}
    if e.data is not None:
        body["data"] = e.data
    return Response(e.http, body)


PUBLIC = {**api.PUBLIC, **api_market.PUBLIC, **api_account.PUBLIC}
def filter_fault(path: str) -> ApiError:
    """The `filter_failure` fault: a filter the paper exchange does not model refuses the new order (Binance's
    PERCENT_PRICE_BY_SIDE); on cancelReplace that is Binance's -2022 with both parts failed, nothing cancelled."""
    e = ApiError(-1013, "Filter failure: PERCENT_PRICE_BY_SIDE")
    if path != "/api/v3/order/cancelReplace":
        return e
    part = {"code": e.code, "msg": e.msg}
    return ApiError(-2022, "Order cancel-replace failed.", http=400,
                    data={"cancelResult": "FAILURE", "newOrderResult": "FAILURE", "cancelResponse": part,
                          "newOrderResponse": part})


SIGNED = {**api.SIGNED, **api_margin.SIGNED, **api_stream.SIGNED, **api_account.SIGNED}
PLACING = api.PLACING | {"/sapi/v1/margin/order", "/sapi/v1/margin/order/oco"}


class Router:
    """Turns a Request into a Response."""

    def __init__(self, app: PaperApp):
        self.app = app
        now = self._market_now if app.s.lockstep else time.time
        self.weight = WeightMeter(now=now)
        self.orders = OrderCounter(app.s.order_limit_10s, app.s.order_limit_1d, now)
        self.verifier = auth.verifier(app.s.api_secret, app.s.api_public_key_file)

    def _market_now(self) -> float:
        return self.app.engine.st.market_ms / 1000

    def dispatch(self, req: Request) -> Response:
        """Route admin or API requests."""
        if req.path.startswith("/admin/"):
            if not req.client_ip.startswith(_LOOPBACK):
                return Response(403, {"error": "admin endpoints are loopback only"})
            return admin.handle(self.app, req)
        key = (req.method, req.path)
        if key not in PUBLIC and key not in SIGNED:
            return Response(404, {"code": -1000, "msg": f"Unknown endpoint {req.method} {req.path}"})
        try:
            p = P.parse(req.query, req.body)
        except ApiError as e:
            p, resp = {}, error(e)
        else:
            resp = self._api(req, key, p)
        header, weight = request_weight(req.method, req.path, p, ok=resp.status == 200)
        resp.headers[header] = str(self.weight.add(weight, header))
        if resp.status == 200 and req.method == "POST" and req.path in api.PLACING:
            placed = 2 if req.path.endswith("/oco") else 1
            resp.headers.update(self.orders.add(placed))
        if resp.status == 200 and req.method == "POST" and isinstance(resp.payload, dict):
            ids = [resp.payload["orderId"]] if "orderId" in resp.payload else \
                [o["orderId"] for o in resp.payload.get("orders", []) if isinstance(o, dict) and "orderId" in o]
            for oid in ids:
                self.app.received_wall[oid] = req.received_at
        return resp

    def _api(self, req: Request, key: tuple[str, str], p: dict[str, str]) -> Response:
        faults = self.app.faults
        side = p.get("side", "").upper()
        lat = faults.take("latency_ms", req.path, side)
        if lat:
            time.sleep(lat.value / 1000)  # injected latency, by definition a real delay
        for kind, status in (("http_418", 418), ("http_429", 429)):
            limited = faults.take(kind, req.path, side)
            if limited:
                return _rate_limited(status, limited.value)
        try:
            if key in SIGNED:
                self._authenticate(req, p, side)
            if req.method == "POST" and req.path in api.PLACING:
                over = self.orders.check(2 if req.path.endswith("/oco") else 1)
                if over is not None:
                    return over
            return self._execute(req, key, p, side)
        except ApiError as e:
            return error(e)

    def _authenticate(self, req: Request, p: dict[str, str], side: str) -> None:
        s = self.app.s
        auth.check_key(req.headers, s.api_key)
        auth.check_signature(req.query, req.body, self.verifier)
        auth.check_timestamp(p, int(time.time() * 1000))
        if self.app.faults.take("err_1021", req.path, side):
            raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")

    def _execute(self, req: Request, key: tuple[str, str], p: dict[str, str], side: str) -> Response:
        faults = self.app.faults
        if req.path in PLACING and req.method == "POST" and faults.take("reject_orders", req.path, side):
            raise ApiError(-2010, "Order rejected (paper exchange fault injection: reject_orders).")
        if req.path in PLACING and req.method == "POST" and faults.take("filter_failure", req.path, side):
            raise filter_fault(req.path)
        handler = PUBLIC.get(key) or SIGNED[key]
        mutating = req.method != "GET"
        with self.app.lock:
            try:
                payload = handler(self.app, p)
            finally:
                if mutating:  # a failed cancelReplace may still have cancelled: always commit
                    self.app.commit()
        return self._after_accept(req, p, side, payload)

    def _after_accept(self, req: Request, p: dict[str, str], side: str, payload: object) -> Response:
        faults = self.app.faults
        if faults.take("after_accept_5xx", req.path, side):
            log.info("fault after_accept_5xx: %s %s executed, replying 503", req.method, req.path)
            return Response(503, {"code": -1007, "msg": "Timeout waiting for response from backend server. "
                                                         "Send status unknown; execution status unknown."})
        delay = faults.take("after_accept_delay_ms", req.path, side)
        if delay:
            return Response(200, payload, hold_s=delay.value / 1000)
        hold = faults.take("timeout", req.path, side)
        if hold:
            return Response(200, payload, hold_s=hold.value / 1000)
        return Response(200, payload)
