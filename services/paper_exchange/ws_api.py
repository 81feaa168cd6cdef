"""Binance's WebSocket API (`/ws-api/v3`) on the paper exchange: the user data stream as Binance serves it
since listenKeys were retired.

Requests are JSON `{"id", "method", "params"}`; answers `{"id", "status": 200, "result", "rateLimits"}` or
`{"id", "status": 4xx, "error": {"code", "msg"}}`. Methods: `userDataStream.subscribe.signature` (apiKey,
timestamp, signature = HMAC-SHA256 of the other params sorted by name, `recvWindow` optional),
`userDataStream.unsubscribe`, `session.logon` (HMAC here; Binance wants Ed25519) + `userDataStream.subscribe`,
`session.status`, `session.logout`, `session.subscriptions`, `ping`, `time`.
Events are pushed as `{"subscriptionId": n, "event": {...}}` (executionReport, listStatus,
outboundAccountPosition; see ws_events.py).

The server runs an asyncio loop (the `websockets` library) in its own thread. The engine's hook runs in
whichever thread holds the app lock; it builds the events there and hands them to the loop with
`call_soon_threadsafe`, which keeps their order. Faults (`/admin/faults`): `ws_silent` swallows events
(count n, or -1 until cleared) without closing anything; `ws_drop` closes every connection.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import threading
import time
from http import HTTPStatus
from typing import Any

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from services.paper_exchange.app import PaperApp
from services.paper_exchange.auth import check_timestamp
from services.paper_exchange.model import ApiError
from services.paper_exchange.ws_events import EventBuilder

log = logging.getLogger("paper_exchange.ws")
PATH = "/ws-api/v3"
_enc = msgspec.json.Encoder()
_WEIGHT = {"userDataStream.subscribe.signature": 2, "userDataStream.subscribe": 2, "session.logon": 2}


class _Session:
    """One WebSocket connection: its subscriptions, logon, and an ordered outbox."""

    def __init__(self, ws: ServerConnection):
        self.ws = ws
        self.since = _now_ms()
        self.subs: dict[int, str] = {}  # subscription id -> api key
        self.next_sub = 0
        self.logon_key: str | None = None
        self.authorized_since = 0
        self.outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self.minute = 0
        self.weight = 0

    def rate_limits(self, method: str) -> list[dict[str, Any]]:
        minute = int(time.time() // 60)
        if minute != self.minute:
            self.minute, self.weight = minute, 0
        self.weight += _WEIGHT.get(method, 1)
        return [{"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000,
                 "count": self.weight}]


class WsApiServer:
    """The WebSocket API of one PaperApp. `start()` returns the bound port."""

    def __init__(self, app: PaperApp, host: str, port: int):
        self.app = app
        self.host, self.port = host, port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: Server | None = None
        self._sessions: set[_Session] = set()
        self._subscribed = 0  # sessions with at least one subscription (read by the engine thread)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None
        s = app.s
        with app.lock:
            self.builder = EventBuilder(lambda: app.engine.st, s.symbol, (s.base_asset, s.quote_asset))

    # ---- lifecycle -----------------------------------------------------------------------------

    def start(self) -> int:
        """Serve in a daemon thread; hook the engine; return the port."""
        self._thread = threading.Thread(target=self._run, name="paper-ws", daemon=True)
        self._thread.start()
        if not self._ready.wait(10) or self._error is not None:
            raise RuntimeError(f"WebSocket API did not start: {self._error}")
        with self.app.lock:
            self.builder.prime()
            self.app.engine.listener = self._on_engine
        return self.port

    def stop(self) -> None:
        """Unhook, close every connection, stop the loop."""
        with self.app.lock:
            if self.app.engine.listener == self._on_engine:
                self.app.engine.listener = None
        if self._loop is not None and self._stopped is not None:
            self._loop.call_soon_threadsafe(self._stopped.set)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as e:  # noqa: BLE001 - reported to start() or logged
            self._error = e
            self._ready.set()
            log.exception("WebSocket API server stopped with an error")

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = asyncio.Event()
        async with serve(self._handler, self.host, self.port, process_request=self._check_path,
                         ping_interval=20, ping_timeout=20, max_size=1 << 20) as server:
            self._server = server
            self.port = next(iter(server.sockets)).getsockname()[1]
            self._ready.set()
            dropper = asyncio.create_task(self._watch_drop())
            await self._stopped.wait()
            dropper.cancel()
            server.close(close_connections=True)
            await server.wait_closed()

    @staticmethod
    def _check_path(conn: ServerConnection, request: Any) -> Any:
        if request.path.split("?", 1)[0] != PATH:
            return conn.respond(HTTPStatus.NOT_FOUND, f"unknown path; the WebSocket API is at {PATH}\n")
        return None

    async def _watch_drop(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            if self.app.faults.take("ws_drop", PATH, ""):
                log.warning("fault ws_drop: closing %d WebSocket connections", len(self._sessions))
                await asyncio.gather(*(s.ws.close(1001, "paper fault ws_drop") for s in list(self._sessions)),
                                     return_exceptions=True)

    # ---- connections ---------------------------------------------------------------------------

    async def _handler(self, ws: ServerConnection) -> None:
        sess = _Session(ws)
        self._sessions.add(sess)
        writer = asyncio.create_task(self._writer(sess))
        try:
            async for raw in ws:
                sess.outbox.put_nowait(self._answer(sess, raw))
        except ConnectionClosed:
            pass
        finally:
            if sess.subs:
                self._subscribed -= 1
            sess.subs.clear()
            self._sessions.discard(sess)
            writer.cancel()

    @staticmethod
    async def _writer(sess: _Session) -> None:
        try:
            while True:
                await sess.ws.send((await sess.outbox.get()).decode())
        except ConnectionClosed:
            pass

    # ---- events from the engine ----------------------------------------------------------------

    def _on_engine(self, kind: str, obj: object, extra: object) -> None:
        """The engine hook (engine thread, app lock held)."""
        if not self._subscribed or self._loop is None:
            self.builder.build(kind, obj, extra)  # keeps the balance/list baselines current
            return
        events = self.builder.build(kind, obj, extra)
        if events:
            self._loop.call_soon_threadsafe(self._publish, events)

    def _publish(self, events: list[dict[str, Any]]) -> None:
        for ev in events:
            if self.app.faults.take("ws_silent", PATH, ""):
                log.info("fault ws_silent: %s event swallowed", ev["e"])
                continue
            for sess in self._sessions:
                for sid in sess.subs:
                    sess.outbox.put_nowait(_enc.encode({"subscriptionId": sid, "event": ev}))

    # ---- requests ------------------------------------------------------------------------------

    def _answer(self, sess: _Session, raw: str | bytes) -> bytes:
        req_id: Any = None
        try:
            try:
                req = msgspec.json.decode(raw.encode() if isinstance(raw, str) else raw)
            except msgspec.DecodeError:
                raise ApiError(-1000, "Malformed request: not JSON.") from None
            if not isinstance(req, dict):
                raise ApiError(-1000, "Malformed request: expected a JSON object.")
            req_id = req.get("id")
            method = req.get("method")
            params = req.get("params") or {}
            if not isinstance(method, str) or not method:
                raise ApiError(-1102, "Mandatory parameter 'method' was not sent, was empty/null, or malformed.")
            if not isinstance(params, dict):
                raise ApiError(-1000, "Malformed request: 'params' must be an object.")
            fn = _METHODS.get(method)
            if fn is None:
                raise ApiError(-1020, "This operation is not supported.")
            result = fn(self, sess, params)
            out = {"id": req_id, "status": 200, "result": result, "rateLimits": sess.rate_limits(method)}
            if params.get("returnRateLimits") is False:
                del out["rateLimits"]
            return _enc.encode(out)
        except ApiError as e:
            return _enc.encode({"id": req_id, "status": e.http, "error": {"code": e.code, "msg": e.msg},
                                "rateLimits": sess.rate_limits("")})
        except Exception:  # noqa: BLE001 - a bug answers -1000 (as Binance's "unknown error"), the session lives on
            log.exception("unhandled error in a WebSocket API request")
            return _enc.encode({"id": req_id, "status": 500, "error": {
                "code": -1000, "msg": "An unknown error occurred while processing the request."}})

    def _verify(self, params: dict[str, Any]) -> str:
        """apiKey, HMAC signature over the sorted params, timestamp/recvWindow. Returns the api key."""
        for name in ("apiKey", "timestamp", "signature"):
            if params.get(name) in (None, ""):
                raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        key = str(params["apiKey"])
        if not hmac.compare_digest(key.encode(), self.app.s.api_key.encode()):
            raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", http=401)
        payload = "&".join(f"{k}={_plain(v)}" for k, v in sorted(params.items()) if k != "signature")
        expected = hmac.new(self.app.s.api_secret.encode(), payload.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(expected, str(params["signature"]).lower()):
            raise ApiError(-1022, "Signature for this request is not valid.")
        check_timestamp({k: _plain(v) for k, v in params.items()}, _now_ms())
        return key

    def _subscribe(self, sess: _Session, key: str) -> dict[str, Any]:
        if key in sess.subs.values():
            raise ApiError(-2035, "User Data Stream subscription already active.")
        sid = sess.next_sub
        sess.next_sub += 1
        if not sess.subs:
            self._subscribed += 1
        sess.subs[sid] = key
        log.info("user data stream subscription %d opened", sid)
        return {"subscriptionId": sid}

    def m_subscribe_signature(self, sess: _Session, params: dict[str, Any]) -> Any:
        """userDataStream.subscribe.signature."""
        return self._subscribe(sess, self._verify(params))

    def m_subscribe(self, sess: _Session, params: dict[str, Any]) -> Any:
        """userDataStream.subscribe: for the account of an authenticated session."""
        if sess.logon_key is None:
            raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", http=401)
        return self._subscribe(sess, sess.logon_key)

    def m_unsubscribe(self, sess: _Session, params: dict[str, Any]) -> Any:
        """userDataStream.unsubscribe: one subscription (subscriptionId) or all of the session."""
        had = bool(sess.subs)
        if "subscriptionId" in params:
            sid = params["subscriptionId"]
            if sid not in sess.subs:
                raise ApiError(-2036, "User Data Stream subscription not active.")
            del sess.subs[sid]
        else:
            sess.subs.clear()
        if had and not sess.subs:
            self._subscribed -= 1
        return {}

    def m_subscriptions(self, sess: _Session, params: dict[str, Any]) -> Any:
        """session.subscriptions."""
        return [{"subscriptionId": sid} for sid in sorted(sess.subs)]

    def _status(self, sess: _Session) -> dict[str, Any]:
        return {"apiKey": sess.logon_key, "authorizedSince": sess.authorized_since or None,
                "connectedSince": sess.since, "returnRateLimits": True, "serverTime": _now_ms(),
                "userDataStream": bool(sess.subs)}

    def m_logon(self, sess: _Session, params: dict[str, Any]) -> Any:
        """session.logon (HMAC accepted here)."""
        sess.logon_key = self._verify(params)
        sess.authorized_since = _now_ms()
        return self._status(sess)

    def m_status(self, sess: _Session, params: dict[str, Any]) -> Any:
        """session.status."""
        return self._status(sess)

    def m_logout(self, sess: _Session, params: dict[str, Any]) -> Any:
        """session.logout."""
        sess.logon_key, sess.authorized_since = None, 0
        return self._status(sess)

    def m_ping(self, sess: _Session, params: dict[str, Any]) -> Any:
        """ping."""
        return {}

    def m_time(self, sess: _Session, params: dict[str, Any]) -> Any:
        """time (wall clock, like /api/v3/time)."""
        return {"serverTime": _now_ms()}


_METHODS = {
    "userDataStream.subscribe.signature": WsApiServer.m_subscribe_signature,
    "userDataStream.subscribe": WsApiServer.m_subscribe,
    "userDataStream.unsubscribe": WsApiServer.m_unsubscribe,
    "session.subscriptions": WsApiServer.m_subscriptions,
    "session.logon": WsApiServer.m_logon,
    "session.status": WsApiServer.m_status,
    "session.logout": WsApiServer.m_logout,
    "ping": WsApiServer.m_ping,
    "time": WsApiServer.m_time,
}


def _plain(v: Any) -> str:
    """A param value as it goes into the signature payload."""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _now_ms() -> int:
    return int(time.time() * 1000)
