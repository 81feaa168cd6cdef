"""Binance's WebSocket API (`/ws-api/v3`) on the paper exchange: the user data stream as Binance serves it
since listenKeys were retired.

Requests are JSON `{"id", "method", "params"}`; answers `{"id", "status": 200, "result", "rateLimits"}` or
`{"id", "status": 4xx, "error": {"code", "msg"}}`. Methods: `userDataStream.subscribe.signature` (apiKey,
timestamp, signature of the other params sorted by name, not percent-encoded: HMAC hex, or RSA / Ed25519 base64
with the account's PAPER_API_PUBLIC_KEY_FILE; `recvWindow` optional),
`userDataStream.subscribe.listenToken` (a margin wallet's token from `POST /sapi/v1/userListenToken`, see
api_stream.py), `userDataStream.unsubscribe`, `session.logon` (Ed25519 keys only, as Binance: an HMAC or RSA
key's logon is -1022) +
`userDataStream.subscribe`, `session.status`, `session.logout`, `session.subscriptions`, `ping`, `time`.
Events are pushed as `{"subscriptionId": n, "event": {...}}` (executionReport, listStatus,
outboundAccountPosition; see ws_events.py), each only to the subscriptions of its wallet: spot ones (signature,
logon) get the spot wallet's, a listenToken one the cross or isolated wallet its token was made for.

A listenToken subscription lasts until its token's expirationTime (wall time). Subscribing again on the same
connection with a newer token of the same wallet extends it (same subscriptionId); when it lapses the connection
gets `{"subscriptionId": n, "event": {"e": "eventStreamTerminated", "E": ms}}` and the subscription is gone.

The server runs an asyncio loop (the `websockets` library) in its own thread. The engine's hook runs in
whichever thread holds the app lock; it builds the events there and hands them to the loop with
`call_soon_threadsafe`, which keeps their order. Faults (`/admin/faults`): `ws_silent` swallows events
(count n, or -1 until cleared) without closing anything; `ws_drop` closes every connection.
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from services.paper_exchange.api_stream import read_token
from services.paper_exchange.app import PaperApp
from services.paper_exchange.auth import check_timestamp, verifier
from services.paper_exchange.model import SPOT, ApiError
from services.paper_exchange.ws_events import EventBuilder

log = logging.getLogger("paper_exchange.ws")
PATH = "/ws-api/v3"
_enc = msgspec.json.Encoder()
_WEIGHT = {"userDataStream.subscribe.signature": 2, "userDataStream.subscribe": 2, "session.logon": 2,
           "userDataStream.subscribe.listenToken": 2}


@dataclass
class _Sub:
    """One user data stream subscription: whose events (wallet id), by which api key (spot) and until when."""
    wallet: str
    api_key: str = ""
    expires_ms: int = 0  # wall ms; 0 = until unsubscribed (spot subscriptions)


class _Session:
    """One WebSocket connection: its subscriptions, logon, and an ordered outbox."""

    def __init__(self, ws: ServerConnection):
        self.ws = ws
        self.since = _now_ms()
        self.subs: dict[int, _Sub] = {}  # subscription id -> what it follows
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
        self._subs_of: dict[str, int] = {}  # wallet -> open subscriptions (read by the engine thread: lock-step count)
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._error: BaseException | None = None
        s = app.s
        self.verifier = verifier(s.api_secret, s.api_public_key_file)
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
        """Every 50 ms: lapse expired listenToken subscriptions, and apply the `ws_drop` fault."""
        while True:
            await asyncio.sleep(0.05)
            self._expire()
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
            self._drop_subs(sess, list(sess.subs))
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
        wallet, events = self.builder.build(kind, obj, extra)  # built even unheard: keeps the baselines current
        # ws_silent is decided here, in step with the request that caused the events (deciding it on the loop
        # thread raced a test's own `clear` of the fault)
        events = [ev for ev in events if not self._swallowed(ev)] if self._subscribed else events
        if events and self._subscribed and self._loop is not None:
            self.app.clock.count_ws_events(len(events) * self._subs_of.get(wallet, 0))
            self._loop.call_soon_threadsafe(self._publish, wallet, events)

    def _swallowed(self, ev: dict[str, Any]) -> bool:
        if self.app.faults.take("ws_silent", PATH, ""):
            log.info("fault ws_silent: %s event swallowed", ev["e"])
            return True
        return False

    def _publish(self, wallet: str, events: list[dict[str, Any]]) -> None:
        """Hand `wallet`'s events to the subscriptions of that wallet (a lapsed one first gets its end)."""
        self._expire()
        for ev in events:
            for sess in self._sessions:
                for sid, sub in sess.subs.items():
                    if sub.wallet == wallet:
                        sess.outbox.put_nowait(_enc.encode({"subscriptionId": sid, "event": ev}))

    def _expire(self) -> None:
        """End every listenToken subscription whose time is up: eventStreamTerminated, then it is gone."""
        now = _now_ms()
        for sess in list(self._sessions):
            lapsed = [sid for sid, sub in sess.subs.items() if 0 < sub.expires_ms <= now]
            for sid in lapsed:
                log.info("user data stream subscription %d expired", sid)
                sess.outbox.put_nowait(_enc.encode({"subscriptionId": sid,
                                                    "event": {"e": "eventStreamTerminated", "E": now}}))
            self._drop_subs(sess, lapsed)

    def _drop_subs(self, sess: _Session, sids: list[int]) -> None:
        """Remove subscriptions, keeping the count of sessions that have any (the engine thread reads it)."""
        had = bool(sess.subs)
        for sid in sids:
            sub = sess.subs.pop(sid, None)
            if sub is not None:
                self._subs_of[sub.wallet] = self._subs_of.get(sub.wallet, 1) - 1
        if had and not sess.subs:
            self._subscribed -= 1

    def _add_sub(self, sess: _Session, sub: _Sub) -> int:
        """Open a subscription on `sess`; its id."""
        sid = sess.next_sub
        sess.next_sub += 1
        if not sess.subs:
            self._subscribed += 1
        sess.subs[sid] = sub
        self._subs_of[sub.wallet] = self._subs_of.get(sub.wallet, 0) + 1
        log.info("user data stream subscription %d opened (%s)", sid, sub.wallet)
        return sid

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
        """apiKey, signature (the key's type) over the sorted params, timestamp/recvWindow. Returns the api key."""
        for name in ("apiKey", "timestamp", "signature"):
            if params.get(name) in (None, ""):
                raise ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")
        key = str(params["apiKey"])
        if not hmac.compare_digest(key.encode(), self.app.s.api_key.encode()):
            raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", http=401)
        payload = "&".join(f"{k}={_plain(v)}" for k, v in sorted(params.items()) if k != "signature")
        if not self.verifier.verify(payload, str(params["signature"])):
            raise ApiError(-1022, "Signature for this request is not valid.")
        check_timestamp({k: _plain(v) for k, v in params.items()}, _now_ms())
        return key

    def _subscribe(self, sess: _Session, key: str) -> dict[str, Any]:
        if any(sub.wallet == SPOT and sub.api_key == key for sub in sess.subs.values()):
            raise ApiError(-2035, "User Data Stream subscription already active.")
        return {"subscriptionId": self._add_sub(sess, _Sub(SPOT, api_key=key))}

    def m_subscribe_signature(self, sess: _Session, params: dict[str, Any]) -> Any:
        """userDataStream.subscribe.signature."""
        return self._subscribe(sess, self._verify(params))

    def m_subscribe(self, sess: _Session, params: dict[str, Any]) -> Any:
        """userDataStream.subscribe: for the account of an authenticated session."""
        if sess.logon_key is None:
            raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", http=401)
        return self._subscribe(sess, sess.logon_key)

    def m_subscribe_listen_token(self, sess: _Session, params: dict[str, Any]) -> Any:
        """userDataStream.subscribe.listenToken (no logon needed): the token's margin wallet until its expiry.
        A token of a wallet this connection already follows extends that subscription (Binance's renewal)."""
        if params.get("listenToken") in (None, ""):
            raise ApiError(-1102, "Mandatory parameter 'listenToken' was not sent, was empty/null, or malformed.")
        self._expire()  # a lapsed subscription is ended (and told so) before it could be "extended"
        grant = read_token(self.app.s.api_secret, params["listenToken"], _now_ms())
        for sid, sub in sess.subs.items():
            if sub.wallet == grant.wallet and sub.expires_ms:
                sub.expires_ms = max(sub.expires_ms, grant.expiration_ms)
                log.info("user data stream subscription %d extended", sid)
                return {"subscriptionId": sid, "expirationTime": sub.expires_ms}
        sid = self._add_sub(sess, _Sub(grant.wallet, expires_ms=grant.expiration_ms))
        return {"subscriptionId": sid, "expirationTime": grant.expiration_ms}

    def m_unsubscribe(self, sess: _Session, params: dict[str, Any]) -> Any:
        """userDataStream.unsubscribe: one subscription (subscriptionId) or all of the session."""
        if "subscriptionId" in params:
            sid = params["subscriptionId"]
            if sid not in sess.subs:
                raise ApiError(-2036, "User Data Stream subscription not active.")
            self._drop_subs(sess, [sid])
        else:
            self._drop_subs(sess, list(sess.subs))
        return {}

    def m_subscriptions(self, sess: _Session, params: dict[str, Any]) -> Any:
        """session.subscriptions."""
        return [{"subscriptionId": sid} for sid in sorted(sess.subs)]

    def _status(self, sess: _Session) -> dict[str, Any]:
        return {"apiKey": sess.logon_key, "authorizedSince": sess.authorized_since or None,
                "connectedSince": sess.since, "returnRateLimits": True, "serverTime": _now_ms(),
                "userDataStream": bool(sess.subs)}

    def m_logon(self, sess: _Session, params: dict[str, Any]) -> Any:
        """session.logon: Ed25519 keys only (web-socket-api.md "Session Authentication"); other key types -1022."""
        key = self._verify(params)
        if self.verifier.key_type != "ED25519":
            raise ApiError(-1022, "Signature for this request is not valid.")
        sess.logon_key = key
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
    "userDataStream.subscribe.listenToken": WsApiServer.m_subscribe_listen_token,
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
