"""The one Binance REST client: signing, clock offset, weight tracking, typed errors.

Talks to Binance, Binance testnet and `services.paper_exchange` alike. Every error is a
typed exception that says whether the request's outcome is known:

* `Rejected` / `NotFound` / `RateLimited` / `ClockSkew` / `Unreachable`: the request was NOT executed.
* `UnknownOutcome`: it may or may not have been executed; query by client order id,
  never blindly re-send.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import quote, urlencode

import msgspec
import requests
from requests.structures import CaseInsensitiveDict

from shared.adapters.signing import HmacSigner, Signer
from shared.domain.orders import MarginBalance, Order, OrderList, Trade
from shared.domain.symbol import SymbolFilters

log = logging.getLogger(__name__)

_UNKNOWN_OUTCOME_CODES = frozenset({-1007, -1006})
_NOT_FOUND_CODES = frozenset({-2013, -2011})


class BinanceError(Exception):
    """Base of every client error. `outcome_known` False means the request may have executed."""
    outcome_known = True

    def __init__(self, msg: str, *, code: int | None = None, http_status: int | None = None, path: str = ""):
        super().__init__(f"{path}: HTTP {http_status} code {code}: {msg}" if path else msg)
        self.code = code
        self.msg = msg
        self.http_status = http_status
        self.path = path


class Rejected(BinanceError):
    """Binance answered 4xx with an error code: the request was NOT executed; safe to fix and retry."""


class NotFound(Rejected):
    """-2013 (order does not exist) / -2011 (unknown order on cancel).

    NB: -2013 right after placing an order is NOT proof of absence: Binance's query path can lag
    the matching engine by a moment. Re-query after a short delay before concluding it is gone.
    """


class Unreachable(BinanceError):
    """The connection could not be opened (refused, DNS, connect timeout): NOT sent; safe to retry later."""


class UnknownOutcome(BinanceError):
    """5xx, timeout, connection dropped after send, or -1007: the request MAY have executed.

    The caller must query by client order id (and adopt the order if it exists), never re-send blindly.
    """
    outcome_known = False


class RateLimited(BinanceError):
    """HTTP 429/418 (or our own shared back-off is active): not executed; wait `retry_after` seconds."""

    def __init__(self, msg: str, *, retry_after: float, **kw: Any):
        super().__init__(msg, **kw)
        self.retry_after = retry_after


class TooManyOrders(RateLimited):
    """-1015 (HTTP 429 "Too many new orders"), or our shared order-count budget holds an entry back: NOT executed.

    Not an IP ban and not a request-weight limit: only new orders wait (`retry_after` seconds, until the 10 s or
    day window rolls); cancels, queries and the other processes' requests go on. Never retried in a loop."""


class ClockSkew(Rejected):
    """-1021 persisted after one automatic server-time re-sync: not executed."""


class CancelReplaceFailed(Rejected):
    """cancelReplace -2022: the cancel failed (and the new order was not placed or failed too).

    `cancel_error` / `new_error` hold the per-part (code, msg) when Binance reported them.
    """

    def __init__(self, msg: str, *, data: dict, **kw: Any):
        super().__init__(msg, **kw)
        self.cancel_result = data.get("cancelResult")
        self.new_result = data.get("newOrderResult")
        self.cancel_error = _part_error(data.get("cancelResponse"))
        self.new_error = _part_error(data.get("newOrderResponse"))
        self.new_order = _part_order(data.get("newOrderResponse"))


class CancelReplacePartial(BinanceError):
    """cancelReplace -2021: one part succeeded and the other failed. Both parts' outcomes are known.

    `cancel_order` / `new_order` are the successful part (Order) or None; `cancel_error` /
    `new_error` the failed part's (code, msg). Typical case: the old stop is cancelled and the new
    one was rejected -> the position is unprotected until the caller places a stop.
    """

    def __init__(self, msg: str, *, data: dict, **kw: Any):
        super().__init__(msg, **kw)
        self.cancel_result = data.get("cancelResult")
        self.new_result = data.get("newOrderResult")
        self.cancel_order = _part_order(data.get("cancelResponse"), cancel=True)
        self.new_order = _part_order(data.get("newOrderResponse"))
        self.cancel_error = _part_error(data.get("cancelResponse"))
        self.new_error = _part_error(data.get("newOrderResponse"))


RETRY_AFTER_MAX_SEC = 3 * 86400.0   # Binance's longest IP ban (418) is 3 days


def _retry_after(header: str | None, default: float = 60.0) -> float:
    """Seconds from a Retry-After header (Binance sends seconds): `default` when absent, not a number or nan;
    negative gives 0 and anything above RETRY_AFTER_MAX_SEC (inf included) gives that cap, so a wait is finite."""
    try:
        v = float(header) if header else default
    except ValueError:
        return default
    return default if math.isnan(v) else min(max(v, 0.0), RETRY_AFTER_MAX_SEC)


def _part_error(part: Any) -> tuple[int, str] | None:
    if isinstance(part, dict) and "code" in part:
        return int(part["code"]), str(part.get("msg", ""))
    return None


def _part_order(part: Any, cancel: bool = False) -> Order | None:
    if not isinstance(part, dict) or "orderId" not in part:
        return None
    o = msgspec.convert(part, type=Order, strict=False)
    return _fix_cancel_ids(o) if cancel else o


def _fix_cancel_ids(o: Order) -> Order:
    # A cancel response's clientOrderId is the cancel request's id; the order's own is origClientOrderId.
    if o.orig_client_order_id:
        cancel_id = o.client_order_id
        o.client_order_id, o.orig_client_order_id = o.orig_client_order_id, cancel_id
    return o


class Backoff(Protocol):
    """Shared 429 back-off (e.g. in Redis, so every process stops sending at once)."""

    def blocked_until(self) -> float:
        """Epoch seconds until which no request may be sent (0 = not blocked)."""

    def block(self, until: float) -> None:
        """Record that no request may be sent before `until` (epoch seconds)."""


class LocalBackoff:
    """In-process Backoff, the default."""

    def __init__(self) -> None:
        self._until = 0.0
        self._lock = threading.Lock()

    def blocked_until(self) -> float:
        """Epoch seconds until which requests are blocked."""
        return self._until

    def block(self, until: float) -> None:
        """Extend the block to `until` (never shortens it)."""
        with self._lock:
            self._until = max(self._until, until)


def dec(value: Decimal | int | str) -> str:
    """A Decimal parameter as Binance wants it: plain digits, never an exponent."""
    return format(Decimal(value), "f")


def sign(secret: bytes, payload: str) -> str:
    """HMAC-SHA256 hex signature of the exact urlencoded payload string."""
    return hmac.new(secret, payload.encode(), hashlib.sha256).hexdigest()


def encode_query(items: list[tuple[str, str]]) -> str:
    """Percent-encode `k=v` pairs as Binance signs them since 2026-01-15: every byte but A-Z a-z 0-9 - _ . ~ is
    %XX-escaped (UTF-8), spaces included (%20, never '+'). The signature is computed over exactly this string."""
    return urlencode(items, quote_via=quote, safe="")


class OrderCountBudget(Protocol):
    """The IP's order-count budget shared by every process (X-MBX-ORDER-COUNT-10S / -1D)."""

    def entry_wait(self) -> float:
        """Seconds an entry must wait before it may be sent (0 = it may go now)."""

    def prime(self, raw: dict) -> None:
        """The shared counts as read in another round trip (the signal's gate), for the next `entry_wait`."""

    def note(self, headers: Any) -> None:
        """Record the order counts of an order reply's headers."""

    def exceeded(self, retry_after: float) -> None:
        """The exchange answered -1015: no entry before `retry_after` seconds from now."""


class BinanceClient:
    """Binance REST client (spot; margin when `margin` is "cross" or "isolated").

    In margin mode place/get/cancel/open_orders/my_trades, OCOs and order lists go to the
    /sapi/v1/margin endpoints; cancel_replace becomes cancel-then-place (Binance has none for
    margin); `side_effect_type` is the default sideEffectType of margin orders.

    The API secret is kept only as bytes for signing and never appears in repr, logs or errors.
    """

    def __init__(self, base_url: str, api_key: str, api_secret: str, recv_window: int = 5000,
                 timeout: float = 5.0, backoff: Backoff | None = None, margin: str | None = None,
                 side_effect_type: str | None = None, signer: Signer | None = None,
                 order_budget: OrderCountBudget | None = None):
        if margin not in (None, "cross", "isolated"):
            raise ValueError(f"margin must be None, 'cross' or 'isolated', got {margin!r}")
        self.base_url = base_url.rstrip("/")
        self._api_key = api_key
        # HMAC with the secret unless an RSA/Ed25519 signer (BINANCE_PRIVATE_KEY_FILE) is given
        self._signer: Signer = signer or HmacSigner(api_secret)
        self.order_budget = order_budget
        self.recv_window = recv_window
        self.timeout = timeout
        self.backoff: Backoff = backoff or LocalBackoff()
        self.margin = margin
        # Default sideEffectType of margin orders/OCOs that do not pass their own (e.g. AUTO_BORROW_REPAY).
        self.side_effect_type = side_effect_type
        self.time_offset_ms = 0
        self.used_weight: int | None = None
        self._session = requests.Session()
        self._session.headers["X-MBX-APIKEY"] = api_key
        # Env proxies resolved once: requests would re-scan the environment on every call.
        self._proxies = requests.utils.get_environ_proxies(self.base_url)
        self._adapter = self._session.get_adapter(self.base_url)
        self._headers = dict(self._session.headers)
        # No body is ever sent (all parameters go in the query string); some front ends want the length.
        self._headers_with_body = {**self._headers, "Content-Length": "0"}

    def __repr__(self) -> str:
        return f"BinanceClient(base_url={self.base_url!r}, margin={self.margin!r})"

    @property
    def key_type(self) -> str:
        """HMAC, RSA or ED25519: the type of the API key this client signs with."""
        return self._signer.key_type

    def sign_payload(self, payload: str) -> str:
        """This client's signature of `payload` (WebSocket API requests: the sorted params, not URL-encoded)."""
        return self._signer.sign(payload)

    def close(self) -> None:
        """Close the HTTP session's pooled connections."""
        self._session.close()

    # ---- transport -------------------------------------------------------------------------

    def _request(self, method: str, path: str, params: dict[str, Any] | None = None,
                 signed: bool = False) -> Any:
        """Send one request; on -1021 re-sync the clock once and re-send (-1021 means not executed)."""
        try:
            return self._send(method, path, params, signed)
        except ClockSkew:
            if not signed:
                raise
            log.warning("-1021 on %s %s: re-syncing server time once", method, path)
            self.sync_time()
            return self._send(method, path, params, signed)

    def _send(self, method: str, path: str, params: dict[str, Any] | None, signed: bool) -> Any:
        self._check_backoff(path)
        query = self._encode(params or {}, signed)
        url = f"{self.base_url}{path}" + (f"?{query}" if query else "")
        try:
            resp = self._http(method, url)
        except requests.ConnectTimeout as e:
            # Never reached the server: the outcome is known (not executed).
            raise Unreachable(f"{method} {path}: connect timeout", path=path) from _scrub(e)
        except requests.ConnectionError as e:
            if _never_sent(e):
                raise Unreachable(f"{method} {path}: connection refused", path=path) from _scrub(e)
            raise UnknownOutcome(f"{method} {path}: connection dropped ({type(e).__name__})", path=path) from _scrub(e)
        except requests.Timeout as e:
            raise UnknownOutcome(f"{method} {path}: no reply within {self.timeout}s", path=path) from _scrub(e)
        return self._handle(resp, path)

    def _http(self, method: str, url: str) -> requests.Response:
        """One request through the session's pooled keep-alive adapter.

        Binance needs no cookies, redirects or hooks, so the Session's per-call merging of
        those (~0.4 ms a call) is skipped; the URL is already fully encoded by `_encode`.
        """
        req = requests.PreparedRequest()
        req.method, req.url, req.body, req.hooks = method, url, None, {"response": []}
        req.headers = CaseInsensitiveDict(self._headers if method == "GET" else self._headers_with_body)
        resp = self._adapter.send(req, timeout=self.timeout, proxies=self._proxies)
        _ = resp.content  # read the whole body now: releases the connection to the pool
        return resp

    def _encode(self, params: dict[str, Any], signed: bool) -> str:
        items = [(k, _param(v)) for k, v in params.items() if v is not None]
        if signed:
            items.append(("recvWindow", str(self.recv_window)))
            items.append(("timestamp", str(int(time.time() * 1000) + self.time_offset_ms)))
        query = encode_query(items)
        if signed:
            query += "&signature=" + quote(self._signer.sign(query), safe="")
        return query

    def _check_backoff(self, path: str) -> None:
        wait = self.backoff.blocked_until() - time.time()
        if wait > 0:
            raise RateLimited(f"rate-limit back-off active for {wait:.1f}s more; not sent",
                              retry_after=wait, path=path)

    def _handle(self, resp: requests.Response, path: str) -> Any:
        # Spot endpoints report X-MBX-USED-WEIGHT-1M; /sapi endpoints X-SAPI-USED-IP-WEIGHT-1M.
        w = resp.headers.get("X-MBX-USED-WEIGHT-1M") or resp.headers.get("X-SAPI-USED-IP-WEIGHT-1M")
        if w is not None and w.isdigit():
            self.used_weight = int(w)
        status = resp.status_code
        if self.order_budget is not None and "X-MBX-ORDER-COUNT-10S" in resp.headers:
            self.order_budget.note(resp.headers)
        if status == 200:
            return resp.content
        code, msg, data = _error_body(resp.content)
        if code == -1015:
            # the order count, not the IP's weight: only new orders wait; no shared back-off (that would stop the
            # stops and cancels too, and re-sending into it is what turns 429s into a 418 ban)
            retry_after = _retry_after(resp.headers.get("Retry-After"), default=10.0)
            if self.order_budget is not None:
                self.order_budget.exceeded(retry_after)
            raise TooManyOrders(msg or "too many new orders", retry_after=retry_after, code=code,
                                http_status=status, path=path)
        if status in (429, 418):
            retry_after = _retry_after(resp.headers.get("Retry-After"))
            self.backoff.block(time.time() + retry_after)
            raise RateLimited(msg or "rate limited", retry_after=retry_after, code=code, http_status=status, path=path)
        if status >= 500 or code in _UNKNOWN_OUTCOME_CODES or code is None:
            raise UnknownOutcome(msg or "server error", code=code, http_status=status, path=path)
        raise self._rejection(code, msg, status, path, data)

    @staticmethod
    def _rejection(code: int, msg: str, status: int, path: str, data: Any) -> BinanceError:
        kw = {"code": code, "http_status": status, "path": path}
        if code == -1021:
            return ClockSkew(msg, **kw)
        if code in _NOT_FOUND_CODES:
            return NotFound(msg, **kw)
        if code == -2021 and isinstance(data, dict):
            return CancelReplacePartial(msg, data=data, **kw)
        if code == -2022 and isinstance(data, dict):
            return CancelReplaceFailed(msg, data=data, **kw)
        return Rejected(msg, **kw)

    # ---- market data -----------------------------------------------------------------------

    def server_time(self) -> int:
        """The exchange's wall time in epoch milliseconds."""
        return int(msgspec.json.decode(self._request("GET", "/api/v3/time"))["serverTime"])

    def sync_time(self) -> int:
        """Measure the server-time offset (ms) used for every signed timestamp; returns it."""
        t0 = time.time() * 1000
        server = self.server_time()
        t1 = time.time() * 1000
        # Assume the server stamped the reply halfway through the round trip.
        self.time_offset_ms = int(server - (t0 + t1) / 2)
        return self.time_offset_ms

    def exchange_info(self, symbol: str) -> SymbolFilters:
        """The symbol's trading filters (PRICE_FILTER, LOT_SIZE, NOTIONAL or MIN_NOTIONAL)."""
        body = msgspec.json.decode(self._request("GET", "/api/v3/exchangeInfo", {"symbol": symbol}))
        return _filters(body["symbols"][0])

    def get_json(self, path: str, params: dict[str, Any] | None = None, signed: bool = False) -> Any:
        """A read-only GET as Binance answers it (decoded JSON), for checks that need the whole document
        (executorctl preflight: apiRestrictions, bnbBurn, account, exchangeInfo)."""
        return msgspec.json.decode(self._request("GET", path, params, signed=signed))

    def book_ticker(self, symbol: str) -> tuple[Decimal, Decimal]:
        """(best bid, best ask)."""
        body = msgspec.json.decode(self._request("GET", "/api/v3/ticker/bookTicker", {"symbol": symbol}))
        return Decimal(body["bidPrice"]), Decimal(body["askPrice"])

    # ---- orders ----------------------------------------------------------------------------

    def _order_path(self) -> str:
        return "/sapi/v1/margin/order" if self.margin else "/api/v3/order"

    def _margin_params(self) -> dict[str, str]:
        if not self.margin:
            return {}
        return {"isIsolated": "TRUE" if self.margin == "isolated" else "FALSE"}

    def place_order(self, symbol: str, side: str, order_type: str, quantity: Decimal | None, *,
                    client_order_id: str, price: Decimal | None = None, stop_price: Decimal | None = None,
                    time_in_force: str | None = None, quote_order_qty: Decimal | None = None,
                    side_effect_type: str | None = None, auto_repay_at_cancel: bool | None = None) -> Order:
        """Place an order (newOrderRespType=FULL). `side_effect_type` and `auto_repay_at_cancel` (Binance's
        autoRepayAtCancel: repay the order's own borrow if it is cancelled; None = the exchange's default, true)
        apply to margin only."""
        params = {"symbol": symbol, **self._margin_params(), "side": side, "type": order_type,
                  "timeInForce": time_in_force, "quantity": quantity, "quoteOrderQty": quote_order_qty,
                  "price": price, "stopPrice": stop_price, "newClientOrderId": client_order_id,
                  "newOrderRespType": "FULL"}
        if self.margin:
            params["sideEffectType"] = side_effect_type or self.side_effect_type
            if auto_repay_at_cancel is not None:
                params["autoRepayAtCancel"] = "TRUE" if auto_repay_at_cancel else "FALSE"
        raw = self._request("POST", self._order_path(), params, signed=True)
        return _working(msgspec.json.decode(raw, type=Order, strict=False))

    def get_order(self, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None) -> Order:
        """Query one order by exchange id or by our client order id."""
        params = {"symbol": symbol, **self._margin_params(), **_id_params(order_id, client_order_id)}
        return msgspec.json.decode(self._request("GET", self._order_path(), params, signed=True), type=Order, strict=False)

    def cancel_order(self, symbol: str, *, order_id: int | None = None, client_order_id: str | None = None) -> Order:
        """Cancel one order; the returned Order's `client_order_id` is the order's own id."""
        params = {"symbol": symbol, **self._margin_params(), **_id_params(order_id, client_order_id)}
        raw = self._request("DELETE", self._order_path(), params, signed=True)
        return _fix_cancel_ids(msgspec.json.decode(raw, type=Order, strict=False))

    def open_orders(self, symbol: str) -> list[Order]:
        """All open orders of `symbol`."""
        path = "/sapi/v1/margin/openOrders" if self.margin else "/api/v3/openOrders"
        params = {"symbol": symbol, **self._margin_params()}
        return msgspec.json.decode(self._request("GET", path, params, signed=True), type=list[Order], strict=False)

    def all_orders(self, symbol: str, limit: int = 500, *, order_id: int | None = None, start_time: int | None = None,
                   end_time: int | None = None) -> list[Order]:
        """The account's orders of `symbol` (any status), oldest first: the most recent ones, or from `order_id` /
        in [`start_time`, `end_time`] (ms, at most 24 h apart). Margin: at most 500 (Binance's maximum there,
        against 1000 on spot) and, without an id or a time, only the last 24 hours."""
        path = "/sapi/v1/margin/allOrders" if self.margin else "/api/v3/allOrders"
        params = {"symbol": symbol, **self._margin_params(), "limit": min(limit, 500) if self.margin else limit,
                  "orderId": order_id, "startTime": start_time, "endTime": end_time}
        return msgspec.json.decode(self._request("GET", path, params, signed=True), type=list[Order], strict=False)

    def account(self) -> dict[str, tuple[Decimal, Decimal]]:
        """Spot balances: asset -> (free, locked)."""
        body = msgspec.json.decode(self._request("GET", "/api/v3/account", {"omitZeroBalances": "false"}, signed=True))
        return {b["asset"]: (Decimal(b["free"]), Decimal(b["locked"])) for b in body["balances"]}

    def commission_rates(self) -> dict[str, Decimal]:
        """The account's commission rates (`maker`, `taker`, ...) as Binance reports them on `/api/v3/account`."""
        body = msgspec.json.decode(self._request("GET", "/api/v3/account", {"omitZeroBalances": "true"}, signed=True))
        return {k: Decimal(str(v)) for k, v in (body.get("commissionRates") or {}).items()}

    def my_trades(self, symbol: str, order_id: int | None = None) -> list[Trade]:
        """Our trades on `symbol` (optionally of one order)."""
        path = "/sapi/v1/margin/myTrades" if self.margin else "/api/v3/myTrades"
        params = {"symbol": symbol, **self._margin_params(), "orderId": order_id}
        return msgspec.json.decode(self._request("GET", path, params, signed=True), type=list[Trade], strict=False)

    # ---- order lists and cancel-replace ----------------------------------------------------

    def place_oco(self, symbol: str, side: str, quantity: Decimal, *, above_type: str, above_price: Decimal,
                  below_type: str, below_price: Decimal, list_client_order_id: str, above_client_order_id: str,
                  below_client_order_id: str, above_stop_price: Decimal | None = None,
                  below_stop_price: Decimal | None = None, below_time_in_force: str | None = None,
                  above_time_in_force: str | None = None, side_effect_type: str | None = None) -> OrderList:
        """Place an OCO via `POST /api/v3/orderList/oco` (FULL reports).

        In margin mode it goes to `POST /sapi/v1/margin/order/oco`, which only knows the classic
        pair: one LIMIT_MAKER leg and one STOP_LOSS(_LIMIT) leg (`side_effect_type` applies there).
        """
        if self.margin:
            above = (above_type, above_price, above_stop_price, above_time_in_force, above_client_order_id)
            below = (below_type, below_price, below_stop_price, below_time_in_force, below_client_order_id)
            params = _margin_oco_params(symbol, side, quantity, above, below, list_client_order_id)
            params.update({**self._margin_params(), "sideEffectType": side_effect_type or self.side_effect_type})
            raw = self._request("POST", "/sapi/v1/margin/order/oco", params, signed=True)
            return _working_list(msgspec.json.decode(raw, type=OrderList, strict=False))
        params = {"symbol": symbol, "side": side, "quantity": quantity, "listClientOrderId": list_client_order_id,
                  "aboveType": above_type, "aboveClientOrderId": above_client_order_id, "abovePrice": above_price,
                  "aboveStopPrice": above_stop_price, "aboveTimeInForce": above_time_in_force,
                  "belowType": below_type, "belowClientOrderId": below_client_order_id, "belowPrice": below_price,
                  "belowStopPrice": below_stop_price, "belowTimeInForce": below_time_in_force,
                  "newOrderRespType": "FULL"}
        raw = self._request("POST", "/api/v3/orderList/oco", params, signed=True)
        return _working_list(msgspec.json.decode(raw, type=OrderList, strict=False))

    def _list_path(self) -> str:
        return "/sapi/v1/margin/orderList" if self.margin else "/api/v3/orderList"

    def get_order_list(self, *, order_list_id: int | None = None, list_client_order_id: str | None = None,
                       symbol: str | None = None) -> OrderList:
        """Query an order list by id or by its client id (`symbol` is required by Binance for isolated margin)."""
        params = {"symbol": symbol if self.margin else None, **self._margin_params(), "orderListId": order_list_id,
                  "origClientOrderId": list_client_order_id}
        return msgspec.json.decode(self._request("GET", self._list_path(), params, signed=True), type=OrderList, strict=False)

    def cancel_order_list(self, symbol: str, *, order_list_id: int | None = None,
                          list_client_order_id: str | None = None) -> OrderList:
        """Cancel a whole order list."""
        params = {"symbol": symbol, **self._margin_params(), "orderListId": order_list_id,
                  "listClientOrderId": list_client_order_id}
        return msgspec.json.decode(self._request("DELETE", self._list_path(), params, signed=True), type=OrderList, strict=False)

    def cancel_replace(self, symbol: str, side: str, order_type: str, quantity: Decimal, *,
                       cancel_orig_client_order_id: str, new_client_order_id: str, price: Decimal | None,
                       stop_price: Decimal | None, time_in_force: str | None,
                       mode: str = "STOP_ON_FAILURE") -> tuple[Order | None, Order | None]:
        """Cancel an order and place a new one in one request.

        Returns (cancelled order, new order) on full success. A partial outcome raises
        CancelReplacePartial (-2021) and a failed cancel raises CancelReplaceFailed (-2022),
        each carrying both parts, so a caller can never mistake "old stop gone, new one rejected"
        for success.

        Binance has no margin cancel-replace: in margin mode this is a cancel followed by a place
        (mode STOP_ON_FAILURE semantics), with the same exceptions for the same outcomes.
        """
        if self.margin:
            return self._margin_cancel_replace(symbol, side, order_type, quantity, cancel_orig_client_order_id,
                                               new_client_order_id, price, stop_price, time_in_force)
        params = {"symbol": symbol, "side": side, "type": order_type, "cancelReplaceMode": mode,
                  "timeInForce": time_in_force, "quantity": quantity, "price": price, "stopPrice": stop_price,
                  "cancelOrigClientOrderId": cancel_orig_client_order_id, "newClientOrderId": new_client_order_id,
                  "newOrderRespType": "FULL"}
        body = msgspec.json.decode(self._request("POST", "/api/v3/order/cancelReplace", params, signed=True))
        new = _part_order(body.get("newOrderResponse"))
        return _part_order(body.get("cancelResponse"), cancel=True), (_working(new) if new else None)


    def _margin_cancel_replace(self, symbol: str, side: str, order_type: str, quantity: Decimal, cancel_cid: str,
                               new_cid: str, price: Decimal | None, stop_price: Decimal | None,
                               tif: str | None) -> tuple[Order | None, Order | None]:
        try:
            cancelled = self.cancel_order(symbol, client_order_id=cancel_cid)
        except Rejected as e:
            part = {"code": e.code, "msg": e.msg}
            raise CancelReplaceFailed(f"cancel failed: {e.msg}", code=-2022, http_status=e.http_status, path=e.path,
                                      data={"cancelResult": "FAILURE", "newOrderResult": "NOT_ATTEMPTED",
                                            "cancelResponse": part}) from e
        try:
            new = self.place_order(symbol, side, order_type, quantity, client_order_id=new_cid, price=price,
                                   stop_price=stop_price, time_in_force=tif)
        except Rejected as e:
            err = CancelReplacePartial(f"cancelled, but the new order failed: {e.msg}", code=-2021,
                                       http_status=e.http_status, path=e.path,
                                       data={"cancelResult": "SUCCESS", "newOrderResult": "FAILURE",
                                             "newOrderResponse": {"code": e.code, "msg": e.msg}})
            err.cancel_order = cancelled
            raise err from e
        return cancelled, new

    # ---- margin accounts (work whatever `margin` mode the client is in) ---------------------------

    def margin_wallet(self, symbol: str) -> dict[str, MarginBalance]:
        """The wallet the client trades in: the isolated pair of `symbol` in isolated mode, else the cross account."""
        return self.isolated_account(symbol) if self.margin == "isolated" else self.margin_account()

    def margin_debts(self, symbol: str) -> dict[str, Decimal]:
        """Borrowed + interest per asset of `margin_wallet(symbol)`."""
        return {a: b.borrowed + b.interest for a, b in self.margin_wallet(symbol).items()}

    def margin_account(self) -> dict[str, MarginBalance]:
        """Cross margin balances by asset (free, locked, borrowed, interest, netAsset)."""
        body = msgspec.json.decode(self._request("GET", "/sapi/v1/margin/account", {}, signed=True))
        return {a["asset"]: msgspec.convert(a, MarginBalance, strict=False) for a in body["userAssets"]}

    def isolated_account(self, symbol: str) -> dict[str, MarginBalance]:
        """The isolated pair's two assets (base and quote) by asset."""
        raw = self._request("GET", "/sapi/v1/margin/isolated/account", {"symbols": symbol}, signed=True)
        pair = msgspec.json.decode(raw)["assets"][0]
        return {side["asset"]: msgspec.convert(side, MarginBalance, strict=False)
                for side in (pair["baseAsset"], pair["quoteAsset"])}

    def _borrow_repay(self, kind: str, asset: str, amount: Decimal, symbol: str | None) -> int:
        params = {"asset": asset, "isIsolated": "TRUE" if symbol else "FALSE", "symbol": symbol,
                  "amount": amount, "type": kind}
        raw = self._request("POST", "/sapi/v1/margin/borrow-repay", params, signed=True)
        return int(msgspec.json.decode(raw)["tranId"])

    def borrow(self, asset: str, amount: Decimal, symbol: str | None = None) -> int:
        """Borrow on cross margin (or isolated `symbol`); returns the transaction id."""
        return self._borrow_repay("BORROW", asset, amount, symbol)

    def repay(self, asset: str, amount: Decimal, symbol: str | None = None) -> int:
        """Repay a margin loan (cross, or isolated `symbol`); returns the transaction id."""
        return self._borrow_repay("REPAY", asset, amount, symbol)

    def max_borrowable(self, asset: str, symbol: str | None = None) -> Decimal:
        """How much of `asset` can still be borrowed (cross, or isolated `symbol`)."""
        params = {"asset": asset, "isolatedSymbol": symbol}
        body = msgspec.json.decode(self._request("GET", "/sapi/v1/margin/maxBorrowable", params, signed=True))
        return Decimal(body["amount"])

    def user_listen_token(self, symbol: str | None = None, validity_ms: int | None = None) -> tuple[str, int]:
        """POST /sapi/v1/userListenToken: a listenToken for the margin account's user data stream (the WebSocket
        API's `userDataStream.subscribe.listenToken`); returns (token, expirationTime in epoch ms).

        `symbol` given: the isolated wallet of that pair; None: the cross wallet. `validity_ms`: how long the token
        (and a subscription made or extended with it) lasts; Binance's default and maximum is 24 h."""
        params = {"symbol": symbol, "isIsolated": "true" if symbol else "false", "validity": validity_ms}
        body = msgspec.json.decode(self._request("POST", "/sapi/v1/userListenToken", params, signed=True))
        return str(body["token"]), int(body["expirationTime"])


def _working(o: Order) -> Order:
    """New-order responses carry no isWorking; workingTime -1 means a stop not yet triggered."""
    if o.working_time == -1:
        o.is_working = False
    return o


def _working_list(lst: OrderList) -> OrderList:
    for o in lst.order_reports:
        _working(o)
    return lst


def _margin_oco_params(symbol: str, side: str, quantity: Decimal, above: tuple, below: tuple,
                       list_cid: str) -> dict[str, Any]:
    """Classic margin OCO parameters from the above/below legs (type, price, stop, tif, client id)."""
    legs = {above[0]: above, below[0]: below}
    limit = legs.get("LIMIT_MAKER")
    stop = legs.get("STOP_LOSS_LIMIT") or legs.get("STOP_LOSS")
    if limit is None or stop is None:
        raise ValueError("margin OCO needs one LIMIT_MAKER leg and one STOP_LOSS/STOP_LOSS_LIMIT leg")
    limit_stop = stop[0] == "STOP_LOSS_LIMIT"
    return {"symbol": symbol, "side": side, "quantity": quantity, "listClientOrderId": list_cid,
            "limitClientOrderId": limit[4], "price": limit[1], "stopClientOrderId": stop[4], "stopPrice": stop[2],
            "stopLimitPrice": stop[1] if limit_stop else None,
            "stopLimitTimeInForce": (stop[3] or "GTC") if limit_stop else None, "newOrderRespType": "FULL"}


def _param(v: Any) -> str:
    if isinstance(v, Decimal):
        return dec(v)
    if isinstance(v, bool):
        return "TRUE" if v else "FALSE"
    if isinstance(v, float):
        raise TypeError("float parameters are not allowed; pass Decimal")
    return str(v)


def _id_params(order_id: int | None, client_order_id: str | None) -> dict[str, Any]:
    if order_id is None and not client_order_id:
        raise ValueError("order_id or client_order_id is required")
    return {"orderId": order_id, "origClientOrderId": client_order_id}


def _error_body(content: bytes) -> tuple[int | None, str, Any]:
    try:
        body = msgspec.json.decode(content)
    except msgspec.DecodeError:
        return None, content[:200].decode(errors="replace"), None
    if not isinstance(body, dict):
        return None, str(body)[:200], None
    code = body.get("code")
    return (int(code) if isinstance(code, int) else None), str(body.get("msg", "")), body.get("data")


def _never_sent(e: requests.ConnectionError) -> bool:
    """True when the connection could not be opened (the request surely did not reach the server)."""
    text = repr(e.args[0]) if e.args else ""
    return "NewConnectionError" in text or "Connection refused" in text or "NameResolutionError" in text


def _scrub(e: Exception) -> Exception:
    """The chained cause, reduced to its type: requests' text carries the full signed URL."""
    return type(e)(f"{type(e).__name__} (details withheld: URL carries signed parameters)")


# Order replies are decoded with strict=False: Binance's margin cancel documents `orderId` as a string ("28")
# where every other reply has a number; lax decoding accepts both without losing anything.


def _norm(text: str) -> Decimal:
    """Binance pads filters to 8 decimals ("0.01000000"); keep the value with its significant exponent so
    prices rounded to the tick print as 95000.01, not 95000.01000000."""
    d = Decimal(text)
    n = d.normalize()
    return n if n.as_tuple().exponent < 0 else Decimal(int(d))


def _filters(sym: dict) -> SymbolFilters:
    f = {x["filterType"]: x for x in sym["filters"]}
    price, lot = f["PRICE_FILTER"], f["LOT_SIZE"]
    notional = f.get("NOTIONAL") or f.get("MIN_NOTIONAL") or {"minNotional": "0"}
    return SymbolFilters(
        symbol=sym["symbol"], base_asset=sym["baseAsset"], quote_asset=sym["quoteAsset"],
        tick_size=_norm(price["tickSize"]), step_size=_norm(lot["stepSize"]), min_qty=_norm(lot["minQty"]),
        max_qty=_norm(lot["maxQty"]), min_notional=_norm(notional["minNotional"]),
        min_price=_norm(price["minPrice"]), max_price=_norm(price["maxPrice"]),
    )
