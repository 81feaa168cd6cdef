"""user_stream: holds the exchange's user data stream (WebSocket API) and publishes every order update to the
`orders` stream.

One thread, a synchronous `websockets` client:

* connect to BINANCE_WS_URL, subscribe, then at once catch up from REST (what changed while nobody was listening:
  a restart, a reconnect). Spot: `userDataStream.subscribe.signature` (HMAC-signed, server-time offset from REST).
  TRADE_MODE=margin: a listenToken of the margin wallet (cross, or MARGIN_ISOLATED's pair) from
  `POST /sapi/v1/userListenToken`, then `userDataStream.subscribe.listenToken`; the subscription is not renewed
  by the exchange, so at half of its time left a new token extends it (if it lapses anyway the exchange sends
  eventStreamTerminated and the session reconnects);
* every event: `executionReport` -> OrderUpdate, `listStatus` -> ListUpdate, published with the order's last
  published progress in one MULTI (stream entry + `{prefix}user_stream:orders` hash), so a SIGKILL never
  loses the "what did we last say" baseline; an update that is not newer than that baseline is old news;
* every USER_STREAM_CHECK_SEC: a REST snapshot (recent orders, in margin mode the open orders, + any order we
  think is open); after a grace (check/3, 1 to 3 s) for events still in flight, an order REST knows more about
  than the stream said is a missed update: a warning event, the REST view is published (source "rest") and the
  session is reconnected;
* connection lost / closed / refused: reconnect with back-off (0.2 s doubling to 10 s), polling REST
  meanwhile so the `orders` stream keeps being fed.

Secrets: the API secret only signs; requests carrying the signature are never logged.
"""
from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import msgspec
import redis
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI, WebSocketException
from websockets.sync.client import ClientConnection, connect

from shared.adapters.binance_rest import BinanceClient, BinanceError, NotFound
from shared.adapters.lockstep import count_ws_event
from shared.adapters.redis_streams import publish
from shared.domain.order_updates import (
    ListUpdate, OrderUpdate, from_execution_report, from_list_status, from_rest, progress,
)
from shared.domain.order_ids import trade_key_of
from shared.domain.orders import Order, expired_by_exchange
from shared.runtime import Runtime

PROCESS = "user_stream"
GRACE_MIN_SEC = 1.0    # events still in flight when REST was asked get this long (up to 3 s) to arrive
RECENT_ORDERS = 100    # allOrders limit of the cross-check
KNOWN_MAX = 2000       # baseline entries kept (final orders beyond this are forgotten, oldest first)
BACKOFF_MAX = 10.0
TOKEN_VALIDITY_MS = 24 * 3600 * 1000   # margin listenToken: Binance's default and maximum
RENEW_RETRY_SEC = 5.0                  # a failed renewal is tried again this soon (or sooner, near the expiry)
RENEW_MIN_SEC = 0.1
_INIT = "_init"


def renew_delay_sec(expires_ms: int, now_ms: int) -> float:
    """Seconds until a listenToken subscription expiring at `expires_ms` (server wall ms) should be extended: half
    of the time it has left (12 h of Binance's 24 h), so that a failed renewal has the other half for retries."""
    return max(RENEW_MIN_SEC, (expires_ms - now_ms) / 2000)


class Seen(msgspec.Struct, array_like=True):
    """What we last published about one order."""
    symbol: str
    status: str
    executed: Decimal
    cum_quote: Decimal
    working: bool

    def progress(self) -> tuple[int, Decimal, int]:
        return progress(self.status, self.executed, self.working)


class Reconnect(Exception):
    """Drop this session and open a new one (missed updates, server shutdown, stream terminated)."""


class SubscribeError(Exception):
    """The exchange refused the subscription (code and message from its error reply)."""


class UserStream:
    """The service; `step()` runs one session (or one back-off wait) and is called until stopping."""

    def __init__(self, rt: Runtime, client: BinanceClient, ws_url: str | None = None,
                 check_sec: float | None = None, token_validity_ms: int = TOKEN_VALIDITY_MS) -> None:
        self.rt, self.cfg, self.client = rt, rt.cfg, client
        self.margin = rt.cfg.TRADE_MODE == "margin"
        if self.margin and client.margin is None:
            raise ValueError("TRADE_MODE=margin needs a margin client (the REST checks read the margin orders)")
        self.token_validity_ms = token_validity_ms
        self.token_expires_ms = 0           # margin: when the subscription lapses unless extended (server wall ms)
        self._renew_at = 0.0                # margin: monotonic time to extend it
        self.url = ws_url or rt.cfg.BINANCE_WS_URL
        self.check_sec = max(0.2, check_sec if check_sec is not None else rt.cfg.USER_STREAM_CHECK_SEC)
        self.grace_sec = max(GRACE_MIN_SEC, min(3.0, self.check_sec / 3))
        self.stream = rt.cfg.key("orders")
        self.known_key = rt.cfg.key("user_stream:orders")
        self.known: dict[int, Seen] = {}
        self.first_run = False
        self.backoff = 0.2
        self.connected = False
        self.subscription_id: int | None = None
        self.published = 0
        self.last_event_at = 0.0   # wall time of the last frame from the exchange (metrics: last event age)
        self._req_id = 0
        self._next_poll = 0.0
        self._loaded = False

    # ---- the baseline ------------------------------------------------------------------------

    def _load_known(self) -> None:
        self.known.clear()
        raw = self.rt.r.hgetall(self.known_key)
        self.first_run = not raw
        dec = msgspec.json.Decoder(Seen)
        for k, v in raw.items():
            key = k.decode()
            if key != _INIT:
                self.known[int(key)] = dec.decode(v)
        if self.first_run:
            self.rt.r.hset(self.known_key, _INIT, b"1")
        self._loaded = True

    def _publish(self, msg: OrderUpdate | ListUpdate) -> None:
        """XADD and (for an order) the new baseline, atomically."""
        pipe = self.rt.r.pipeline(transaction=True)
        publish(pipe, self.stream, msg, self.cfg.STREAM_MAXLEN)
        if isinstance(msg, OrderUpdate):
            seen = Seen(msg.symbol, msg.status, msg.executed_qty, msg.cum_quote, msg.is_working)
            pipe.hset(self.known_key, str(msg.order_id), msgspec.json.encode(seen))
            self.known[msg.order_id] = seen
            self._prune(pipe)
        self._execute(pipe)
        self.published += 1
        if isinstance(msg, OrderUpdate) and expired_by_exchange(msg.status) and msg.expiry_reason != "OCO_TRIGGER":
            self._expired(msg)

    def _expired(self, u: OrderUpdate) -> None:
        """The exchange ended one of our orders (self-trade prevention, price range rule, ...): the exit side acts on
        the `orders` stream; this event tells the operator why."""
        self.rt.event("order_expired_by_exchange", trade_key_of(u.client_order_id) or "", level="warning",
                      client_id=u.client_order_id, order_id=u.order_id, status=u.status,
                      expiry_reason=u.expiry_reason, prevented_qty=str(u.prevented_qty), source=u.source)

    def _execute(self, pipe: Any) -> None:
        """Run the write; if it fails the in-memory baseline is ahead of Redis, so reload it from Redis before
        anything else is decided (else a missed update would pass for already published)."""
        try:
            pipe.execute()
        except redis.RedisError:
            self._loaded = False
            raise

    def _record_silently(self, o: Order) -> None:
        seen = Seen(o.symbol, o.status, o.executed_qty, o.cummulative_quote_qty, o.is_working)
        pipe = self.rt.r.pipeline(transaction=False)
        pipe.hset(self.known_key, str(o.order_id), msgspec.json.encode(seen))
        self.known[o.order_id] = seen
        self._execute(pipe)

    def _prune(self, pipe: Any) -> None:
        if len(self.known) <= KNOWN_MAX:
            return
        final = sorted(oid for oid, s in self.known.items() if s.progress()[0] == 1)
        for oid in final[: len(self.known) - KNOWN_MAX]:
            del self.known[oid]
            pipe.hdel(self.known_key, str(oid))

    def _is_news(self, u: OrderUpdate) -> bool:
        seen = self.known.get(u.order_id)
        return seen is None or progress(u.status, u.executed_qty, u.is_working) > seen.progress()

    # ---- main loop ---------------------------------------------------------------------------

    def step(self) -> None:
        """One session until it ends, then a back-off wait (polling REST meanwhile)."""
        if not self._loaded:
            self._load_known()  # here, not in __init__: a Redis outage at start is retried by run_guarded
        try:
            self._session()
            if self.rt.stopping:
                return
        except Reconnect as e:
            self.rt.log.info("stream_reconnect", reason=str(e))
            self.backoff = 0.2
        except SubscribeError as e:
            self.rt.event("stream_subscribe_refused", level="error", error=str(e))
        except ConnectionClosed as e:
            self.rt.event("stream_disconnected", level="warning", code=e.rcvd.code if e.rcvd else None,
                          reason=e.rcvd.reason if e.rcvd else "no close frame")
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI, WebSocketException) as e:
            self.rt.log.warning("stream_connect_failed", error=f"{type(e).__name__}: {e}", retry_in=self.backoff)
        finally:
            self.connected = False
            self.subscription_id = None
        self._wait_backoff()

    def _wait_backoff(self) -> None:
        deadline = time.monotonic() + self.backoff
        self.backoff = min(self.backoff * 2, BACKOFF_MAX)
        while not self.rt.stopping and time.monotonic() < deadline:
            self._beat()
            if time.monotonic() >= self._next_poll:  # nobody is listening: REST keeps `orders` fed
                self._next_poll = time.monotonic() + self.check_sec
                self._catch_up("ws_down")
            time.sleep(0.05)  # back-off between connection attempts, not synchronisation

    def _session(self) -> None:
        with connect(self.url, open_timeout=5, close_timeout=2, ping_interval=20, ping_timeout=20,
                     max_size=1 << 22) as ws:
            sid = self._subscribe(ws)
            self.connected, self.subscription_id, self.backoff = True, sid, 0.2
            margin = {"wallet": self._wallet(), "expires_ms": self.token_expires_ms} if self.margin else {}
            self._catch_up("subscribed")
            # said once caught up: from here on every update of the wallet comes from the stream
            self.rt.event("stream_subscribed", subscription_id=sid, url=self.url, **margin)
            next_check = time.monotonic() + self.check_sec
            pending: tuple[list[Order], float] | None = None
            while not self.rt.stopping:
                try:
                    raw = ws.recv(timeout=0.1)
                except TimeoutError:
                    raw = None
                if raw is not None:
                    self.last_event_at = time.time()
                    self._on_message(raw)
                self._beat()
                now = time.monotonic()
                if self.margin and now >= self._renew_at:
                    self._renew(ws)
                if pending is None and now >= next_check:
                    snap = self._snapshot(full=not self.margin)
                    pending = (snap, now + self.grace_sec) if snap is not None else None
                    next_check = now + self.check_sec
                elif pending is not None and now >= pending[1]:
                    self._cross_check(pending[0])
                    pending = None
            self._unsubscribe(ws)

    def _beat(self) -> None:
        info = {"connected": self.connected, "subscription_id": self.subscription_id, "published": self.published,
                "last_event_at": self.last_event_at}
        if self.margin:
            info.update(wallet=self._wallet(), expires_ms=self.token_expires_ms)
        self.rt.beater.maybe_beat(info)

    def _wallet(self) -> str:
        return "isolated" if self.cfg.MARGIN_ISOLATED else "cross"

    # ---- the WebSocket API -------------------------------------------------------------------

    def _request(self, ws: ClientConnection, method: str, params: dict[str, Any]) -> Any:
        """Send one request and wait (5 s) for its answer; events arriving meanwhile are handled."""
        self._req_id += 1
        rid = f"us-{self._req_id}"
        ws.send(msgspec.json.encode({"id": rid, "method": method, "params": params}).decode())
        deadline = time.monotonic() + 5.0
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer to {method} within 5 s")
            msg = msgspec.json.decode(ws.recv(timeout=left))
            if isinstance(msg, dict) and msg.get("id") == rid:
                if msg.get("status") != 200:
                    err = msg.get("error") or {}
                    if err.get("code") == -1021:
                        self.client.sync_time()
                    raise SubscribeError(f"{method}: {err.get('code')} {err.get('msg')}")
                return msg.get("result")
            self._on_parsed(msg)

    def _subscribe(self, ws: ClientConnection) -> int:
        if self.margin:
            return self._subscribe_token(ws)
        params: dict[str, Any] = {"apiKey": self.cfg.BINANCE_API_KEY,
                                  "timestamp": int(time.time() * 1000) + self.client.time_offset_ms,
                                  "recvWindow": self.cfg.RECV_WINDOW}
        payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
        params["signature"] = self.client.sign_payload(payload)  # HMAC, RSA or Ed25519: the client's key
        result = self._request(ws, "userDataStream.subscribe.signature", params)
        return int(result["subscriptionId"])

    # ---- margin: listenToken subscription and its renewal -------------------------------------

    def _listen_token(self) -> str:
        """A new listenToken of the margin wallet (REST); a refusal or no answer counts as a refused subscription."""
        symbol = self.cfg.SYMBOL if self.cfg.MARGIN_ISOLATED else None
        try:
            token, _expires = self.client.user_listen_token(symbol, self.token_validity_ms)
        except (BinanceError, OSError) as e:
            raise SubscribeError(f"userListenToken: {e}") from e
        return token

    def _subscribe_token(self, ws: ClientConnection) -> int:
        """Subscribe (or, on a live subscription, extend it) with a new token; plan the next renewal."""
        result = self._request(ws, "userDataStream.subscribe.listenToken", {"listenToken": self._listen_token()})
        self.token_expires_ms = int(result["expirationTime"])
        self._renew_at = time.monotonic() + renew_delay_sec(self.token_expires_ms, self._server_ms())
        return int(result["subscriptionId"])

    def _renew(self, ws: ClientConnection) -> None:
        """Extend the margin subscription before it lapses. A failure is retried (the subscription still runs);
        if it lapses meanwhile, the exchange's eventStreamTerminated makes the session reconnect."""
        try:
            sid = self._subscribe_token(ws)
        except (SubscribeError, TimeoutError) as e:
            retry = min(RENEW_RETRY_SEC, renew_delay_sec(self.token_expires_ms, self._server_ms()))
            self.rt.log.warning("stream_token_renew_failed", error=str(e), retry_in=retry)
            self._renew_at = time.monotonic() + retry
            return
        self.subscription_id = sid
        self.rt.log.info("stream_token_renewed", subscription_id=sid, expires_ms=self.token_expires_ms)

    def _server_ms(self) -> int:
        return int(time.time() * 1000) + self.client.time_offset_ms

    def _unsubscribe(self, ws: ClientConnection) -> None:
        try:
            self._request(ws, "userDataStream.unsubscribe", {})
        except (SubscribeError, TimeoutError, ConnectionClosed, OSError):
            pass

    def _on_message(self, raw: str | bytes) -> None:
        try:
            msg = msgspec.json.decode(raw)
        except msgspec.DecodeError:
            self.rt.log.warning("stream_message_undecodable", size=len(raw))
            return
        self._on_parsed(msg)

    def _on_parsed(self, msg: Any) -> None:
        if not isinstance(msg, dict) or not isinstance(msg.get("event"), dict):
            return  # a late answer to an earlier request
        self._on_event(msg["event"])
        if self.cfg.REPLAY_LOCKSTEP:  # handled (published or old news): the replay driver may move on
            count_ws_event(self.rt.r, self.cfg.EXEC_PREFIX, "ws_recv")

    def _on_event(self, ev: dict[str, Any]) -> None:
        kind = ev.get("e")
        try:
            if kind == "executionReport":
                u = from_execution_report(ev)
                if self._is_news(u):
                    self._publish(u)
                else:
                    self.rt.log.info("stream_update_not_newer", order_id=u.order_id, status=u.status)
            elif kind == "listStatus":
                self._publish(from_list_status(ev))
            elif kind in ("eventStreamTerminated", "serverShutdown"):
                raise Reconnect(kind)
        except (KeyError, ValueError, TypeError, ArithmeticError) as e:
            self.rt.log.warning("stream_event_malformed", kind=kind, error=str(e))

    # ---- REST: catch-up and cross-check ------------------------------------------------------

    def _snapshot(self, full: bool = True) -> list[Order] | None:
        """Recent orders of SYMBOL (`full`; else its open orders), plus every order we believe open that is not
        among them."""
        sym = self.cfg.SYMBOL
        try:
            if full:
                orders = self.client.all_orders(sym, limit=RECENT_ORDERS)
            else:
                # Margin allOrders weighs 200 (spot's 20), so the periodic check reads the open orders (10). With the
                # look-ups below it still sees every change of an order the stream ever reported and every new open
                # order; only one placed and finished unseen between two checks is left to its owner's REST checks.
                orders = self.client.open_orders(sym)
            have = {o.order_id for o in orders}
            for oid, seen in sorted(self.known.items()):
                if oid not in have and seen.symbol == sym and seen.progress()[0] == 0:
                    try:
                        orders.append(self.client.get_order(sym, order_id=oid))
                    except NotFound:
                        pass
            return orders
        except (BinanceError, OSError) as e:
            self.rt.log.warning("rest_check_failed", error=str(e))
            return None

    def _behind(self, orders: list[Order]) -> list[Order]:
        """Orders REST knows more about than we published, oldest change first."""
        out = []
        for o in orders:
            seen = self.known.get(o.order_id)
            if seen is None or progress(o.status, o.executed_qty, o.is_working) > seen.progress():
                out.append(o)
        return sorted(out, key=lambda o: (o.update_time or o.time, o.order_id))

    def _publish_rest(self, orders: list[Order]) -> None:
        for o in orders:
            seen = self.known.get(o.order_id)
            if self.first_run and seen is None and o.status not in ("NEW", "PARTIALLY_FILLED"):
                self._record_silently(o)  # history from before this service ever ran
                continue
            self._publish(from_rest(o, seen.executed if seen else Decimal(0), seen.cum_quote if seen else Decimal(0)))

    def _catch_up(self, reason: str) -> None:
        """Publish whatever REST knows that we have not said (after (re)subscribing, or while disconnected; margin
        polling while disconnected reads the open orders only, see `_snapshot`)."""
        full = reason == "subscribed" or not self.margin
        snap = self._snapshot(full)
        if snap is None:
            return
        behind = self._behind(snap)
        if behind:
            self.rt.event("rest_catch_up", reason=reason, orders=len(behind),
                          client_order_ids=[o.client_order_id for o in behind][:20])
            self._publish_rest(behind)
        if full:  # history from before this service ever ran is only recognised in a full snapshot
            self.first_run = False

    def _cross_check(self, snap: list[Order]) -> None:
        """Compare a REST snapshot (taken `grace_sec` ago) with what the stream has said since."""
        behind = self._behind(snap)
        if not behind:
            return
        self.rt.event("stream_missed_updates", level="warning", orders=len(behind),
                      client_order_ids=[o.client_order_id for o in behind][:20],
                      statuses=[o.status for o in behind][:20], subscription_id=self.subscription_id)
        self._publish_rest(behind)
        raise Reconnect("stream missed updates that REST reports")


def run(rt: Runtime, client: BinanceClient) -> None:
    """The service loop (until SIGTERM/SIGINT). `client` is the configured wallet's (`rt.client()`): in margin mode
    the REST catch-up and cross-check read the margin wallet's orders."""
    from shared.service_loop import run_guarded
    us = UserStream(rt, client)
    try:
        client.sync_time()
    except (BinanceError, OSError) as e:
        rt.log.warning("exchange_unreachable", error=str(e))
    rt.log.info("user_stream_start", url=us.url, check_sec=us.check_sec, trade_mode=rt.cfg.TRADE_MODE)
    run_guarded(rt, us.step)
    rt.log.info("stopped", published=us.published)
