"""The paper exchange's WebSocket API user data stream, seen by a plain `websockets` client (not ours)."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from services.paper_exchange.api_stream import make_token
from services.paper_exchange.ws_api import WsApiServer
from shared.adapters.binance_rest import BinanceClient, Rejected
from tests.pe_helpers import KEY, SECRET, SYMBOL, Paper, paper_env, wait_until

Q = Decimal("0.001")
REPORT_KEYS = {"e", "E", "s", "c", "S", "o", "f", "q", "p", "P", "F", "g", "C", "x", "X", "r", "i", "l", "z", "L",
               "n", "N", "T", "t", "w", "m", "M", "O", "Z", "Y", "Q", "V"}
LIST_KEYS = {"e", "E", "s", "g", "c", "l", "L", "r", "C", "T", "O"}


@pytest.fixture
def px(tmp_path: Path) -> Iterator[tuple[Paper, str]]:
    """A paper exchange (in this process) with its WebSocket API on a free port: (paper, ws url)."""
    p = Paper(paper_env(tmp_path))
    ws = WsApiServer(p.server.app, "127.0.0.1", 0)
    port = ws.start()
    yield p, f"ws://127.0.0.1:{port}/ws-api/v3"
    ws.stop()
    p.stop()


def signed(params: dict[str, Any], secret: str = SECRET) -> dict[str, Any]:
    """Binance WS API signing: HMAC-SHA256 over the params sorted by name, joined as k=v&..."""
    payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    return {**params, "signature": hmac.new(secret.encode(), payload.encode(), hashlib.sha256).hexdigest()}


def call(ws: ClientConnection, method: str, params: dict[str, Any] | None = None, rid: Any = 1) -> dict[str, Any]:
    """One request; returns its answer (events arriving first are skipped: tests subscribe before acting)."""
    ws.send(json.dumps({"id": rid, "method": method, **({"params": params} if params is not None else {})}))
    deadline = time.monotonic() + 5
    while True:
        msg = json.loads(ws.recv(timeout=max(0.01, deadline - time.monotonic())))
        if msg.get("id") == rid:
            return msg


def subscribe(ws: ClientConnection, key: str = KEY, secret: str = SECRET) -> dict[str, Any]:
    return call(ws, "userDataStream.subscribe.signature",
                signed({"apiKey": key, "timestamp": int(time.time() * 1000)}, secret))


@contextmanager
def subscribed(url: str) -> Iterator[ClientConnection]:
    with connect(url, open_timeout=5) as ws:
        assert subscribe(ws)["result"] == {"subscriptionId": 0}
        yield ws


class Events:
    """Events received on one connection, with waits on conditions (deadlines, no fixed sleeps)."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.got: list[dict[str, Any]] = []

    def until(self, cond: Callable[[list[dict[str, Any]]], bool], timeout: float = 5.0) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while not cond(self.got):
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out; events so far: {[(e['e'], e.get('x'), e.get('c')) for e in self.got]}")
            try:
                msg = json.loads(self.ws.recv(timeout=left))
            except TimeoutError:
                continue
            if "event" in msg:
                assert msg["subscriptionId"] == 0
                self.got.append(msg["event"])
        return self.got

    def reports(self, cid: str) -> list[dict[str, Any]]:
        return [e for e in self.got if e["e"] == "executionReport" and cid in (e["c"], e["C"])]

    def wait_report(self, cid: str, x: str, timeout: float = 5.0) -> dict[str, Any]:
        self.until(lambda _: any(r["x"] == x for r in self.reports(cid)), timeout)
        return [r for r in self.reports(cid) if r["x"] == x][-1]

    def wait_last(self, kind: str, timeout: float = 5.0) -> dict[str, Any]:
        n = len([e for e in self.got if e["e"] == kind])
        self.until(lambda g: len([e for e in g if e["e"] == kind]) > n, timeout)
        return [e for e in self.got if e["e"] == kind][-1]


def test_subscribe_then_place_fill_cancel_and_balances(px):
    p, url = px
    c = p.client()
    with subscribed(url) as ws:
        ev = Events(ws)
        bid, ask = c.book_ticker(SYMBOL)
        c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="rest-1")
        new = ev.wait_report("rest-1", "NEW")
        assert REPORT_KEYS <= set(new)
        assert (new["s"], new["S"], new["o"], new["X"], new["q"], new["p"], new["w"]) == \
            (SYMBOL, "BUY", "LIMIT", "NEW", "0.00100000", f"{bid - 100:.8f}", True)
        acct = ev.until(lambda g: any(e["e"] == "outboundAccountPosition" for e in g))
        pos = [e for e in acct if e["e"] == "outboundAccountPosition"][-1]
        usdc = {b["a"]: b for b in pos["B"]}["USDC"]
        assert Decimal(usdc["l"]) == (bid - 100) * Q  # the locked quote shows up

        c.cancel_order(SYMBOL, client_order_id="rest-1")
        cx = ev.wait_report("rest-1", "CANCELED")
        assert cx["X"] == "CANCELED" and cx["C"] == "rest-1" and cx["c"] != "rest-1"  # as Binance: c = the cancel's id
        pos = ev.wait_last("outboundAccountPosition")
        assert {b["a"]: b for b in pos["B"]}["USDC"]["l"] == "0.00000000"

        # A marketable limit: NEW, then TRADE (FILLED) with the trade's fields, then the balances.
        c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=ask + 50, time_in_force="GTC", client_order_id="take-1")
        tr = ev.wait_report("take-1", "TRADE")
        assert [r["x"] for r in ev.reports("take-1")] == ["NEW", "TRADE"]
        assert (tr["X"], tr["l"], tr["z"], tr["L"], tr["N"], tr["m"]) == \
            ("FILLED", "0.00100000", "0.00100000", f"{ask:.8f}", "BTC", False)
        assert tr["t"] > 0 and Decimal(tr["n"]) == Q * Decimal("0.001") and Decimal(tr["Z"]) == ask * Q
        pos = ev.wait_last("outboundAccountPosition")
        assert Decimal({b["a"]: b for b in pos["B"]}["BTC"]["f"]) == Decimal("0.5") + Q - Q * Decimal("0.001")


def test_oco_fill_expires_the_sibling_and_reports_the_list(px):
    p, url = px
    c = p.client()
    last = p.last()
    with subscribed(url) as ws:
        ev = Events(ws)
        c.place_oco(SYMBOL, "SELL", Decimal("0.2"), above_type="LIMIT_MAKER", above_price=last + 200,
                    below_type="STOP_LOSS_LIMIT", below_stop_price=last - 100, below_price=last - 110,
                    below_time_in_force="GTC", list_client_order_id="L1", above_client_order_id="L1-tp",
                    below_client_order_id="L1-sl")
        started = ev.wait_last("listStatus")
        assert LIST_KEYS <= set(started)
        assert (started["c"], started["l"], started["L"], started["C"]) == ("OCO", "EXEC_STARTED", "EXECUTING", "L1")
        assert {o["c"] for o in started["O"]} == {"L1-tp", "L1-sl"}
        sl_new, tp_new = ev.wait_report("L1-sl", "NEW"), ev.wait_report("L1-tp", "NEW")
        assert sl_new["w"] is False and tp_new["w"] is True and sl_new["g"] == tp_new["g"] == started["g"]

        p.price(last + 250)  # trades through the take-profit: it fills, the stop leg expires, the list is done
        tp = ev.wait_report("L1-tp", "TRADE")
        sl = ev.wait_report("L1-sl", "EXPIRED")
        assert (tp["X"], tp["m"], sl["X"]) == ("FILLED", True, "EXPIRED")
        done = ev.wait_last("listStatus")
        assert (done["l"], done["L"], done["g"]) == ("ALL_DONE", "ALL_DONE", started["g"])


def test_stop_trigger_is_reported(px):
    p, url = px
    c = p.client()
    last = p.last()
    with subscribed(url) as ws:
        ev = Events(ws)
        # A stop-limit whose limit the market gaps past: it triggers (isWorking) and rests.
        c.place_order(SYMBOL, "SELL", "STOP_LOSS_LIMIT", Q, price=last - 90, stop_price=last - 100,
                      time_in_force="GTC", client_order_id="stop-1")
        assert ev.wait_report("stop-1", "NEW")["w"] is False
        p.price(last - 300, gap=True)
        ev.until(lambda _: len(ev.reports("stop-1")) == 2)
        trig = ev.reports("stop-1")[-1]
        assert (trig["x"], trig["X"], trig["w"]) == ("NEW", "NEW", True) and "W" in trig


def test_errors_bad_signature_key_params_method_path(px):
    p, url = px
    with connect(url, open_timeout=5) as ws:
        bad = subscribe(ws, secret="not-the-secret")
        assert (bad["status"], bad["error"]["code"]) == (400, -1022)
        assert bad["error"]["msg"] == "Signature for this request is not valid."
        wrong_key = subscribe(ws, key="someone-else")
        assert (wrong_key["status"], wrong_key["error"]["code"]) == (401, -2015)
        missing = call(ws, "userDataStream.subscribe.signature", {"apiKey": KEY})
        assert missing["error"]["code"] == -1102
        stale = call(ws, "userDataStream.subscribe.signature",
                     signed({"apiKey": KEY, "timestamp": int(time.time() * 1000) - 60_000}))
        assert stale["error"]["code"] == -1021
        assert call(ws, "no.such.method", {})["status"] == 400
        assert call(ws, "session.subscriptions", {})["result"] == []  # nothing was subscribed by the failures
        ok = subscribe(ws)
        assert ok["status"] == 200 and ok["result"] == {"subscriptionId": 0} and ok["rateLimits"]
        assert subscribe(ws)["error"]["code"] == -2035  # one subscription per account per connection
        assert call(ws, "userDataStream.unsubscribe", {})["result"] == {}
        assert call(ws, "session.subscriptions", {})["result"] == []
    with pytest.raises(InvalidStatus):
        with connect(url.replace("/ws-api/v3", "/ws"), open_timeout=5):
            pass


def test_hmac_logon_refused_and_unsubscribed_gets_nothing(px):
    p, url = px
    c = p.client()
    with connect(url, open_timeout=5) as a, connect(url, open_timeout=5) as b:
        assert call(a, "userDataStream.subscribe", {})["status"] == 401  # not logged on
        # session.logon is for Ed25519 keys only (tests/test_api_keys.py logs on with one): an HMAC key is -1022
        logon = call(a, "session.logon", signed({"apiKey": KEY, "timestamp": int(time.time() * 1000)}))
        assert logon["error"]["code"] == -1022
        assert call(a, "userDataStream.subscribe", {})["status"] == 401
        assert subscribe(a)["result"] == {"subscriptionId": 0}
        assert subscribe(b)["result"] == {"subscriptionId": 0}
        assert call(b, "userDataStream.unsubscribe", {"subscriptionId": 0})["result"] == {}
        bid, _ = c.book_ticker(SYMBOL)
        c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="lg-1")
        Events(a).wait_report("lg-1", "NEW")
        c.cancel_order(SYMBOL, client_order_id="lg-1")
        # b unsubscribed: a ping answered after the events were sent proves none reached it.
        b.send(json.dumps({"id": "p", "method": "ping"}))
        assert json.loads(b.recv(timeout=5))["id"] == "p"


def test_two_clients_see_the_same_events(px):
    p, url = px
    c = p.client()
    with subscribed(url) as a, subscribed(url) as b:
        ea, eb = Events(a), Events(b)
        bid, _ = c.book_ticker(SYMBOL)
        for i in range(3):
            c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100 - i, time_in_force="GTC", client_order_id=f"two-{i}")
        c.cancel_order(SYMBOL, client_order_id="two-1")
        for e in (ea, eb):
            e.wait_report("two-1", "CANCELED")
        strip = [(x["e"], x.get("c"), x.get("x"), x.get("B")) for x in ea.got]
        eb.until(lambda g: len(g) >= len(ea.got))
        assert strip == [(x["e"], x.get("c"), x.get("x"), x.get("B")) for x in eb.got]


def test_fault_ws_silent_swallows_events_then_ws_drop_closes(px):
    p, url = px
    c = p.client()
    with subscribed(url) as ws:
        ev = Events(ws)
        p.post("/admin/faults", {"ws_silent": -1})
        bid, _ = c.book_ticker(SYMBOL)
        c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="quiet")
        p.post("/admin/faults", {"clear": True})
        c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 101, time_in_force="GTC", client_order_id="loud")
        ev.wait_report("loud", "NEW")
        assert ev.reports("quiet") == []  # swallowed, and the connection stayed open
        p.post("/admin/faults", {"ws_drop": 1})
        with pytest.raises(ConnectionClosed):
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                try:
                    ws.recv(timeout=0.5)
                except TimeoutError:
                    continue
    with subscribed(url) as ws:  # a new connection works again
        assert call(ws, "ping", {})["result"] == {}


def test_binance_sdk_websocket_api_client_subscribes_and_decodes_events(px):
    """Binance's own connector (binance-sdk-spot) as the client: signing, subscription and event models."""
    pytest.importorskip("binance_sdk_spot")
    import asyncio

    from binance_common.configuration import ConfigurationWebSocketAPI
    from binance_sdk_spot.spot import Spot

    p, url = px
    c = p.client()

    async def run() -> list[Any]:
        api = Spot(config_ws_api=ConfigurationWebSocketAPI(api_key=KEY, api_secret=SECRET, stream_url=url))
        conn = await api.websocket_api.create_connection()
        try:
            got: list[Any] = []
            sub = await conn.user_data_stream_subscribe_signature()
            assert sub.response.data().result.subscription_id == 0
            sub.stream.on("message", got.append)
            bid, _ = await asyncio.to_thread(c.book_ticker, SYMBOL)
            await asyncio.to_thread(lambda: c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100,
                                                          time_in_force="GTC", client_order_id="sdk-1"))
            deadline = time.monotonic() + 5
            while len(got) < 2 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            return [g.actual_instance for g in got]
        finally:
            await conn.close_connection()

    report, position = asyncio.run(run())[:2]
    assert type(report).__name__ == "ExecutionReport" and (report.c, report.x, report.X) == ("sdk-1", "NEW", "NEW")
    assert type(position).__name__ == "OutboundAccountPosition" and position.B[0].a == "USDC"


# ---- margin: listenToken subscriptions --------------------------------------------------------------------------

DAY_MS = 24 * 3600 * 1000


def _now_ms() -> int:
    return int(time.time() * 1000)


class Feed:
    """Everything one connection receives, as (subscriptionId, event), with waits on conditions (deadlines)."""

    def __init__(self, ws: ClientConnection):
        self.ws = ws
        self.got: list[tuple[int, dict[str, Any]]] = []
        self._pings = 0

    def _recv(self, timeout: float) -> dict[str, Any] | None:
        try:
            msg = json.loads(self.ws.recv(timeout=timeout))
        except TimeoutError:
            return None
        if "event" in msg:
            self.got.append((msg["subscriptionId"], msg["event"]))
        return msg

    def until(self, cond: Callable[[], bool], what: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"timed out waiting for {what}; got {[(s, e['e'], e.get('c')) for s, e in self.got]}")
            self._recv(min(left, 0.2))

    def fence(self) -> None:
        """A ping answered: every event the server queued before it has been read (it keeps the order)."""
        self._pings += 1
        rid = f"fence-{self._pings}"
        self.ws.send(json.dumps({"id": rid, "method": "ping"}))
        deadline = time.monotonic() + 5
        while True:
            assert time.monotonic() < deadline, "no answer to the fence ping"
            msg = self._recv(max(0.01, deadline - time.monotonic()))
            if msg is not None and msg.get("id") == rid:
                return

    def reported(self, sid: int | None = None) -> set[str]:
        """Client order ids of the executionReports received (on subscription `sid`, or on any)."""
        return {e["c"] for s, e in self.got if e["e"] == "executionReport" and sid in (None, s)}

    def has_report(self, cid: str, x: str, sid: int | None = None) -> bool:
        return any(e["e"] == "executionReport" and e["c"] == cid and e["x"] == x and sid in (None, s)
                   for s, e in self.got)

    def terminated(self) -> list[int]:
        return [s for s, e in self.got if e["e"] == "eventStreamTerminated"]


def token_subscribe(ws: ClientConnection, token: str, rid: Any = "lt") -> dict[str, Any]:
    return call(ws, "userDataStream.subscribe.listenToken", {"listenToken": token}, rid=rid)


def _limit_buy(c: Any, cid: str, below: int = 100) -> None:
    bid, _ = c.book_ticker(SYMBOL)
    c.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - below, time_in_force="GTC", client_order_id=cid)


def test_user_listen_token_endpoint(px):
    p, _ = px
    cross = p.client(margin="cross")
    before = _now_ms()
    token, expires = cross.user_listen_token()
    assert token and before + DAY_MS <= expires <= _now_ms() + DAY_MS  # default validity: 24 h of wall time
    short, short_expires = cross.user_listen_token(validity_ms=60_000)
    assert short != token and before + 60_000 <= short_expires <= _now_ms() + 60_000
    iso_token, _ = cross.user_listen_token(SYMBOL)
    assert iso_token not in (token, short)
    with pytest.raises(Rejected) as ei:
        cross.user_listen_token(validity_ms=DAY_MS + 1)
    assert ei.value.code == -1100
    with pytest.raises(Rejected) as ei:
        cross.user_listen_token("ETHUSDC")  # isolated: only a pair the account has
    assert ei.value.code == -1121
    with pytest.raises(Rejected) as ei:
        BinanceClient(p.url, KEY, "not-the-secret").user_listen_token()  # a signed endpoint
    assert ei.value.code == -1022


def test_cross_token_subscription_gets_the_cross_wallet_only(px):
    p, url = px
    spot, cross, iso = p.client(), p.client(margin="cross"), p.client(margin="isolated")
    token, expires = cross.user_listen_token()
    with connect(url, open_timeout=5) as m, connect(url, open_timeout=5) as s:
        ok = token_subscribe(m, token)  # no session.logon on this connection
        assert ok["status"] == 200 and ok["result"] == {"subscriptionId": 0, "expirationTime": expires}
        assert call(m, "session.status", {})["result"]["userDataStream"] is True
        assert subscribe(s)["result"] == {"subscriptionId": 0}
        fm, fs = Feed(m), Feed(s)
        _limit_buy(spot, "sp-1")
        _limit_buy(iso, "iso-1")
        _limit_buy(cross, "cr-1")
        fm.until(lambda: fm.has_report("cr-1", "NEW"), "the cross order on the token subscription")
        fs.until(lambda: fs.has_report("sp-1", "NEW"), "the spot order on the spot subscription")
        fm.fence()
        fs.fence()
        assert fm.reported() == {"cr-1"} and fs.reported() == {"sp-1"}
        new = next(e for _, e in fm.got if e["e"] == "executionReport")
        assert REPORT_KEYS <= set(new) and (new["s"], new["S"], new["X"]) == (SYMBOL, "BUY", "NEW")
        pos = [e for _, e in fm.got if e["e"] == "outboundAccountPosition"]
        assert len(pos) == 1  # the cross wallet's USDC lock (the isolated and spot locks are not this wallet's)
        usdc = {b["a"]: b for b in pos[0]["B"]}["USDC"]
        assert Decimal(usdc["l"]) == Decimal(new["p"]) * Q and Decimal(usdc["f"]) == 10000 - Decimal(usdc["l"])

        # A margin OCO: its listStatus and legs come on the token subscription too, its fill and expiry as well.
        last = p.last()
        cross.place_oco(SYMBOL, "SELL", Decimal("0.2"), above_type="LIMIT_MAKER", above_price=last + 200,
                        below_type="STOP_LOSS_LIMIT", below_stop_price=last - 100, below_price=last - 110,
                        below_time_in_force="GTC", list_client_order_id="co-l", above_client_order_id="co-tp",
                        below_client_order_id="co-sl")
        p.price(last + 250)
        fm.until(lambda: fm.has_report("co-tp", "TRADE") and fm.has_report("co-sl", "EXPIRED"), "the OCO's end")
        fm.until(lambda: any(e["e"] == "listStatus" and e["l"] == "ALL_DONE" for _, e in fm.got), "ALL_DONE")
        lists = [e for _, e in fm.got if e["e"] == "listStatus"]
        assert LIST_KEYS <= set(lists[0]) and lists[0]["C"] == "co-l" and lists[0]["l"] == "EXEC_STARTED"
        fs.fence()
        assert fs.reported() == {"sp-1"} and not any(e["e"] == "listStatus" for _, e in fs.got)


def test_isolated_token_follows_the_isolated_wallet_beside_a_cross_one(px):
    p, url = px
    spot, cross, iso = p.client(), p.client(margin="cross"), p.client(margin="isolated")
    iso_token, _ = iso.user_listen_token(SYMBOL)
    cross_token, _ = cross.user_listen_token()
    with connect(url, open_timeout=5) as m:
        assert token_subscribe(m, iso_token, "a")["result"]["subscriptionId"] == 0
        assert token_subscribe(m, cross_token, "b")["result"]["subscriptionId"] == 1  # another wallet: its own
        assert call(m, "session.subscriptions", {})["result"] == [{"subscriptionId": 0}, {"subscriptionId": 1}]
        f = Feed(m)
        _limit_buy(cross, "cr-2")
        _limit_buy(spot, "sp-2")
        iso.place_order(SYMBOL, "SELL", "MARKET", Q, client_order_id="iso-2")  # fills at once
        f.until(lambda: f.has_report("iso-2", "TRADE", sid=0) and f.has_report("cr-2", "NEW", sid=1),
                "each wallet's order on its own subscription")
        f.fence()
        assert f.reported(0) == {"iso-2"} and f.reported(1) == {"cr-2"}
        iso_pos = [e for s, e in f.got if s == 0 and e["e"] == "outboundAccountPosition"][-1]
        btc = {b["a"]: b for b in iso_pos["B"]}["BTC"]
        assert Decimal(btc["f"]) == Decimal("0.5") - Q  # the isolated wallet's own BTC


def test_invalid_expired_or_forged_tokens_are_refused_with_1209(px):
    p, url = px
    cross = p.client(margin="cross")
    token, _ = cross.user_listen_token()
    brief, brief_expires = cross.user_listen_token(validity_ms=1)
    forged = make_token("someone-elses-secret", "CROSS", _now_ms() + 60_000)
    tampered = token[:-2] + ("AA" if token[-2:] != "AA" else "BB")
    wait_until(lambda: _now_ms() > brief_expires, 5, what="the 1 ms token to expire")
    with connect(url, open_timeout=5) as m:
        for bad in ("not-a-token", "", tampered, forged, brief):
            r = token_subscribe(m, bad)
            code = -1102 if bad == "" else -1209
            assert (r["status"], r["error"]["code"]) == (400, code), bad
        assert call(m, "session.subscriptions", {})["result"] == []
        assert token_subscribe(m, token)["result"]["subscriptionId"] == 0  # the real one still works


def test_a_new_token_extends_the_subscription(px):
    p, url = px
    cross = p.client(margin="cross")
    first, first_expires = cross.user_listen_token(validity_ms=1500)
    with connect(url, open_timeout=5) as m:
        f = Feed(m)
        assert token_subscribe(m, first, "a")["result"] == {"subscriptionId": 0, "expirationTime": first_expires}
        second, second_expires = cross.user_listen_token(validity_ms=60_000)
        renewed = token_subscribe(m, second, "b")
        assert renewed["result"] == {"subscriptionId": 0, "expirationTime": second_expires}
        assert call(m, "session.subscriptions", {})["result"] == [{"subscriptionId": 0}]
        f.until(lambda: _now_ms() > first_expires + 300, "the first token's expiry to pass")
        _limit_buy(cross, "after-renewal")
        f.until(lambda: f.has_report("after-renewal", "NEW", sid=0), "an event after the first expiry")
        f.fence()
        assert f.terminated() == []


def test_a_lapsed_subscription_ends_with_event_stream_terminated(px):
    p, url = px
    spot, cross = p.client(), p.client(margin="cross")
    token, expires = cross.user_listen_token(validity_ms=1000)
    with connect(url, open_timeout=5) as m:
        f = Feed(m)
        assert token_subscribe(m, token)["result"]["subscriptionId"] == 0
        assert subscribe(m)["result"] == {"subscriptionId": 1}  # a spot subscription on the same connection
        f.until(lambda: f.terminated() == [0], "eventStreamTerminated of subscription 0")
        end = next(e for _, e in f.got if e["e"] == "eventStreamTerminated")
        assert end["E"] >= expires and set(end) == {"e", "E"}
        assert call(m, "session.subscriptions", {})["result"] == [{"subscriptionId": 1}]
        _limit_buy(cross, "cr-late")
        _limit_buy(spot, "sp-late")
        f.until(lambda: f.has_report("sp-late", "NEW", sid=1), "the spot order (that subscription lives on)")
        f.fence()
        assert f.reported() == {"sp-late"}  # nothing of the cross wallet after the lapse
        again, _ = cross.user_listen_token()
        assert token_subscribe(m, again, "again")["result"]["subscriptionId"] == 2  # a new subscription
        assert token_subscribe(m, token, "old")["error"]["code"] == -1209  # the lapsed token stays dead
