"""Request dispatch: faults, authentication, weight header, the engine lock and persistence."""
from __future__ import annotations

import logging
import threading
import time

from services.paper_exchange import admin, api, api_margin, auth
from services.paper_exchange import params as P
from services.paper_exchange.app import PaperApp, Request, Response
from services.paper_exchange.model import ApiError

log = logging.getLogger("paper_exchange.router")

_LOOPBACK = ("127.", "::1", "::ffff:127.")


class WeightMeter:
    """Request weight used in the current wall-clock minute (X-MBX-USED-WEIGHT-1M)."""

    def __init__(self) -> None:
        self._minute, self._used = 0, 0
        self._lock = threading.Lock()

    def add(self, weight: int = 1) -> int:
        """Count a request; return the minute's total."""
        with self._lock:
            minute = int(time.time() // 60)
            if minute != self._minute:
                self._minute, self._used = minute, 0
            self._used += weight
            return self._used


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


SIGNED = {**api.SIGNED, **api_margin.SIGNED}
PLACING = api.PLACING | {"/sapi/v1/margin/order", "/sapi/v1/margin/order/oco"}


class Router:
    """Turns a Request into a Response."""

    def __init__(self, app: PaperApp):
        self.app = app
        self.weight = WeightMeter()

    def dispatch(self, req: Request) -> Response:
        """Route admin or API requests."""
        if req.path.startswith("/admin/"):
            if not req.client_ip.startswith(_LOOPBACK):
                return Response(403, {"error": "admin endpoints are loopback only"})
            return admin.handle(self.app, req)
        key = (req.method, req.path)
        if key not in api.PUBLIC and key not in SIGNED:
            return Response(404, {"code": -1000, "msg": f"Unknown endpoint {req.method} {req.path}"})
        resp = self._api(req, key)
        weight_header = "X-SAPI-USED-IP-WEIGHT-1M" if req.path.startswith("/sapi/") else "X-MBX-USED-WEIGHT-1M"
        resp.headers[weight_header] = str(self.weight.add())
        return resp

    def _api(self, req: Request, key: tuple[str, str]) -> Response:
        faults = self.app.faults
        try:
            p = P.parse(req.query, req.body)
        except ValueError:
            return error(ApiError(-1100, "Illegal characters found in a parameter."))
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
            return self._execute(req, key, p, side)
        except ApiError as e:
            return error(e)

    def _authenticate(self, req: Request, p: dict[str, str], side: str) -> None:
        s = self.app.s
        auth.check_key(req.headers, s.api_key)
        auth.check_signature(req.query, req.body, s.api_secret.encode())
        auth.check_timestamp(p, int(time.time() * 1000))
        if self.app.faults.take("err_1021", req.path, side):
            raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")

    def _execute(self, req: Request, key: tuple[str, str], p: dict[str, str], side: str) -> Response:
        faults = self.app.faults
        if req.path in PLACING and req.method == "POST" and faults.take("reject_orders", req.path, side):
            raise ApiError(-2010, "Order rejected (paper exchange fault injection: reject_orders).")
        handler = api.PUBLIC.get(key) or SIGNED[key]
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
