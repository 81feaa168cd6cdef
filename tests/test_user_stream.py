"""user_stream on real parts: the paper exchange process (HTTP + WebSocket API), a real redis-server, the service
as its own process. Every wait is on a condition with a deadline."""
from __future__ import annotations

import hashlib
import hmac
import itertools
import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import redis
import requests
from websockets.sync.client import connect

from services.exit_manager.order_feed import ExitFeed
from services.position_engine.order_feed import OrderFeed
from services.user_stream.service import RENEW_MIN_SEC, UserStream, renew_delay_sec
from shared.adapters.binance_rest import BinanceClient
from shared.config import load_config
from shared.adapters.redis_streams import decode_fields
from shared.domain.messages import Event
from shared.domain.order_updates import ListUpdate, OrderUpdate
from shared.runtime import Runtime
from tests.pe_helpers import KEY, REPO, SECRET, SYMBOL, paper_env
from tests.redis_helpers import free_port, user_url, wait_until

Q = Decimal("0.001")
_prefixes = itertools.count(1)


class PaperProc:
    """`python -m services.paper_exchange` on fixed ports (so a restart comes back at the same URLs)."""

    def __init__(self, tmp: Path, **extra: str):
        self.http_port, self.ws_port = free_port(), free_port()
        self.env = {**os.environ, **paper_env(tmp, PAPER_PORT=str(self.http_port), PAPER_WS_PORT=str(self.ws_port),
                                              PAPER_FSYNC="0", **extra), "PYTHONPATH": str(REPO)}
        self.log = tmp / "paper.log"
        self.url = f"http://127.0.0.1:{self.http_port}"
        self.ws_url = f"ws://127.0.0.1:{self.ws_port}/ws-api/v3"
        self.proc: subprocess.Popen | None = None
        self.http = requests.Session()
        self.start()

    def start(self) -> None:
        with open(self.log, "ab") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.paper_exchange"], cwd=REPO, env=self.env,
                                         stdout=subprocess.PIPE, stderr=err, bufsize=0)
        fd, seen = self.proc.stdout.fileno(), b""
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if select.select([fd], [], [], 0.2)[0]:
                chunk = os.read(fd, 4096)
                assert chunk, f"paper exchange exited: {self.log.read_text()[-2000:]}"
                seen += chunk
                if b"ws listening on" in seen and seen.endswith(b"\n"):
                    assert f"ws://127.0.0.1:{self.ws_port}".encode() in seen
                    return
        raise AssertionError("paper exchange did not report its WebSocket port")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)
        self.proc.wait(timeout=10)
        self.proc.stdout.close()

    def post(self, path: str, body: dict[str, Any]) -> Any:
        r = self.http.post(self.url + path, json=body, timeout=5)
        r.raise_for_status()
        return r.json()

    def last(self) -> Decimal:
        r = self.http.get(self.url + "/admin/state", timeout=5)
        return Decimal(r.json()["last"])


def service_env(tmp: Path, redis_url: str, paper: PaperProc, prefix: str) -> dict[str, str]:
    """The service's settings for this paper exchange and Redis."""
    return {"REDIS_URL": user_url(redis_url, "user_stream", prefix), "EXEC_PREFIX": prefix, "BINANCE_BASE_URL": paper.url,
            "BINANCE_WS_URL": paper.ws_url, "BINANCE_API_KEY": KEY, "BINANCE_API_SECRET": SECRET, "SYMBOL": SYMBOL,
            "USER_STREAM_CHECK_SEC": "1", "CLOCK": "wall", "STATE_FN": str(tmp / "state.json"),
            "HEARTBEAT_TTL_SEC": "5"}


MARGIN = {"TRADE_MODE": "margin", "MARGIN_BORROW_MODE": "manual", "MARGIN_SIDE_EFFECT": "NO_SIDE_EFFECT"}


class Service:
    """The user_stream process."""

    def __init__(self, tmp: Path, redis_url: str, paper: PaperProc, **extra_env: str):
        self.prefix = f"us{next(_prefixes)}:"
        self.env = {**{k: v for k, v in os.environ.items() if not k.startswith(("N8N_", "BINANCE_"))},
                    **service_env(tmp, redis_url, paper, self.prefix), "PYTHONPATH": str(REPO),
                    "PYTHONUNBUFFERED": "1", **extra_env}
        self.log = tmp / f"user_stream-{self.prefix[:-1]}.log"
        self.r = redis.Redis.from_url(redis_url)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.user_stream"], cwd=REPO, env=self.env,
                                         stdout=out, stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=5)

    def orders(self) -> list[OrderUpdate | ListUpdate]:
        return [decode_fields(f) for _id, f in self.r.xrange(self.prefix + "orders")]  # type: ignore[misc]

    def updates(self, cid: str | None = None) -> list[OrderUpdate]:
        return [m for m in self.orders() if isinstance(m, OrderUpdate) and cid in (None, m.client_order_id)]

    def events(self, kind: str) -> list[Event]:
        out = []
        for _id, f in self.r.xrange(self.prefix + "events"):
            m = decode_fields(f)
            if isinstance(m, Event) and m.service == "user_stream" and m.kind == kind:
                out.append(m)
        return out

    def wait_subscribed(self, n: int, timeout: float = 20) -> None:
        wait_until(lambda: len(self.events("stream_subscribed")) >= n, timeout, 0.02,
                   f"subscription #{n} (log: {self.log})")

    def wait_update(self, cid: str, status: str, timeout: float = 10) -> OrderUpdate:
        return wait_until(lambda: next((u for u in self.updates(cid) if u.status == status), None), timeout, 0.02,
                          f"{cid} {status} on the orders stream")

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.stop()
        self.r.close()


@pytest.fixture
def paper(tmp_path: Path) -> Iterator[PaperProc]:
    p = PaperProc(tmp_path)
    yield p
    if p.proc is not None and p.proc.poll() is None:
        p.kill(signal.SIGTERM)
    p.http.close()


@pytest.fixture
def svc(tmp_path: Path, redis_url: str, paper: PaperProc) -> Iterator[Service]:
    s = Service(tmp_path, redis_url, paper)
    s.start()
    yield s
    s.close()


@pytest.fixture
def client(paper: PaperProc) -> Iterator[BinanceClient]:
    c = BinanceClient(paper.url, KEY, SECRET)
    yield c
    c.close()


def _subscribe_plain(ws) -> None:
    """Subscribe a WebSocket client that is not ours: raw JSON, Binance's signing rule."""
    params = {"apiKey": KEY, "timestamp": int(time.time() * 1000)}
    payload = "&".join(f"{k}={v}" for k, v in sorted(params.items()))
    params["signature"] = hmac.new(SECRET.encode(), payload.encode(), hashlib.sha256).hexdigest()
    ws.send(json.dumps({"id": "x", "method": "userDataStream.subscribe.signature", "params": params}))
    assert json.loads(ws.recv(timeout=5))["result"]["subscriptionId"] == 0


def test_every_update_of_a_scripted_sequence_lands_in_order(svc, paper, client):
    svc.wait_subscribed(1)
    with connect(paper.ws_url, open_timeout=5) as other:
        _subscribe_plain(other)
        _scripted_sequence(svc, paper, client, other)


def _scripted_sequence(svc: Service, paper: PaperProc, client: BinanceClient, other: Any) -> None:
    bid, ask = client.book_ticker(SYMBOL)
    last = paper.last()
    client.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="A")
    client.place_order(SYMBOL, "BUY", "LIMIT", Q, price=ask + 50, time_in_force="GTC", client_order_id="B")
    client.cancel_order(SYMBOL, client_order_id="A")
    client.place_oco(SYMBOL, "SELL", Decimal("0.2"), above_type="LIMIT_MAKER", above_price=last + 200,
                     below_type="STOP_LOSS_LIMIT", below_stop_price=last - 100, below_price=last - 110,
                     below_time_in_force="GTC", list_client_order_id="L", above_client_order_id="L-tp",
                     below_client_order_id="L-sl")
    paper.post("/admin/price", {"price": str(last + 250)})
    expected = [("A", "NEW", "NEW"), ("B", "NEW", "NEW"), ("B", "TRADE", "FILLED"), ("A", "CANCELED", "CANCELED"),
                ("L-sl", "NEW", "NEW"), ("L-tp", "NEW", "NEW"), ("list", "EXEC_STARTED", "EXECUTING"),
                ("L-tp", "TRADE", "FILLED"), ("L-sl", "EXPIRED", "EXPIRED"), ("list", "ALL_DONE", "ALL_DONE")]

    def seen() -> list[tuple[str, str, str]]:
        return [(m.client_order_id, m.exec_type, m.status) if isinstance(m, OrderUpdate)
                else ("list", m.list_status_type, m.list_order_status) for m in svc.orders()]
    wait_until(lambda: len(seen()) >= len(expected), 10, 0.02, "the whole sequence on the orders stream")
    assert seen() == expected
    msgs = svc.orders()
    assert all(m.source == "ws" for m in msgs)
    b_fill = msgs[2]
    assert isinstance(b_fill, OrderUpdate)
    assert (b_fill.last_qty, b_fill.executed_qty, b_fill.last_price, b_fill.commission_asset) == (Q, Q, ask, "BTC")
    assert b_fill.commission == Q * Decimal("0.001") and b_fill.cum_quote == ask * Q and b_fill.trade_id > 0
    assert isinstance(msgs[4], OrderUpdate) and msgs[4].order_type == "STOP_LOSS_LIMIT" and not msgs[4].is_working
    assert isinstance(msgs[9], ListUpdate) and {o.client_order_id for o in msgs[9].orders} == {"L-tp", "L-sl"}
    # The other (plain) client saw the same order changes, in the same order.
    reports: list[tuple[str, str, str]] = []
    deadline = time.monotonic() + 10
    while len(reports) < 8 and time.monotonic() < deadline:
        ev = json.loads(other.recv(timeout=max(0.01, deadline - time.monotonic())))["event"]
        if ev["e"] == "executionReport":
            reports.append((ev["C"] if ev["X"] == "CANCELED" else ev["c"], ev["x"], ev["X"]))
    assert reports == [e for e in expected if e[0] != "list"]
    assert svc.events("stream_missed_updates") == []
    hb = svc.r.get(svc.prefix + "hb:user_stream")
    assert hb and json.loads(hb)["info"]["connected"] is True


def test_reconnects_and_resubscribes_after_a_drop_and_an_exchange_restart(svc, paper, client):
    svc.wait_subscribed(1)
    paper.post("/admin/faults", {"ws_drop": 1})
    svc.wait_subscribed(2)
    bid, _ = client.book_ticker(SYMBOL)
    client.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="after-drop")
    assert svc.wait_update("after-drop", "NEW").source == "ws"

    paper.kill(signal.SIGKILL)  # the exchange dies; the state comes back from its journal
    paper.start()
    svc.wait_subscribed(3)
    client.cancel_order(SYMBOL, client_order_id="after-drop")
    assert svc.wait_update("after-drop", "CANCELED").source == "ws"
    assert [(u.exec_type, u.source) for u in svc.updates("after-drop")] == [("NEW", "ws"), ("CANCELED", "ws")]
    assert svc.events("stream_disconnected")


def test_a_silent_stream_is_noticed_by_the_rest_cross_check(svc, paper, client):
    svc.wait_subscribed(1)
    paper.post("/admin/faults", {"ws_silent": -1})  # events are swallowed; the connection stays open
    bid, _ = client.book_ticker(SYMBOL)
    client.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="quiet")
    missed = wait_until(lambda: svc.events("stream_missed_updates"), 10, 0.02, "the cross-check's report")
    assert missed[0].data["client_order_ids"] == ["quiet"]
    u = svc.wait_update("quiet", "NEW")
    assert (u.source, u.exec_type, u.orig_qty) == ("rest", "NEW", Q)
    svc.wait_subscribed(2)  # and it reconnected
    paper.post("/admin/faults", {"clear": True})
    client.cancel_order(SYMBOL, client_order_id="quiet")
    assert svc.wait_update("quiet", "CANCELED").source == "ws"
    assert len(svc.updates("quiet")) == 2  # the REST view was not repeated


def test_sigkilled_service_restarts_and_catches_up(svc, paper, client):
    svc.wait_subscribed(1)
    bid, _ = client.book_ticker(SYMBOL)
    last = paper.last()
    client.place_order(SYMBOL, "SELL", "LIMIT", Q, price=last + 100, time_in_force="GTC", client_order_id="K1")
    svc.wait_update("K1", "NEW")
    assert svc.stop(signal.SIGKILL) == -signal.SIGKILL
    # While it is down: K1 fills, K2 is placed.
    paper.post("/admin/price", {"price": str(last + 150)})
    client.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="K2")
    svc.start()
    filled = svc.wait_update("K1", "FILLED", timeout=20)
    assert (filled.source, filled.exec_type, filled.last_qty, filled.last_price) == ("rest", "TRADE", Q, last + 100)
    assert svc.wait_update("K2", "NEW").source == "rest"
    assert svc.events("rest_catch_up")
    client.cancel_order(SYMBOL, client_order_id="K2")
    assert svc.wait_update("K2", "CANCELED").source == "ws"
    assert [u.status for u in svc.updates("K1")] == ["NEW", "FILLED"]  # nothing published twice
    assert svc.stop() == 0  # SIGTERM: clean exit


# ---- TRADE_MODE=margin: the margin wallet's stream by listenToken ---------------------------------------------

@pytest.fixture
def cross(paper: PaperProc) -> Iterator[BinanceClient]:
    c = BinanceClient(paper.url, KEY, SECRET, margin="cross")
    yield c
    c.close()


@pytest.fixture
def iso(paper: PaperProc) -> Iterator[BinanceClient]:
    c = BinanceClient(paper.url, KEY, SECRET, margin="isolated")
    yield c
    c.close()


def _margin_service(tmp: Path, redis_url: str, paper: PaperProc, isolated: bool) -> Service:
    return Service(tmp, redis_url, paper, **MARGIN, MARGIN_ISOLATED="true" if isolated else "false")


def test_margin_mode_publishes_the_cross_wallets_orders(tmp_path, redis_url, paper, client, cross):
    bid, ask = cross.book_ticker(SYMBOL)
    # Before the service runs: an open spot order and an open cross order; the catch-up must read the margin wallet.
    client.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 90, time_in_force="GTC", client_order_id="spot-x")
    cross.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 90, time_in_force="GTC", client_order_id="M0")
    svc = _margin_service(tmp_path, redis_url, paper, isolated=False)
    svc.start()
    try:
        svc.wait_subscribed(1)
        sub = svc.events("stream_subscribed")[0].data
        assert sub["wallet"] == "cross" and sub["expires_ms"] > time.time() * 1000 + 23 * 3600 * 1000  # 24 h token
        assert svc.wait_update("M0", "NEW").source == "rest"
        cross.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="M1")
        cross.place_order(SYMBOL, "BUY", "LIMIT", Q, price=ask + 50, time_in_force="GTC", client_order_id="M2")
        client.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="spot-y")
        cross.cancel_order(SYMBOL, client_order_id="M1")
        assert svc.wait_update("M1", "NEW").source == "ws"
        filled = svc.wait_update("M2", "FILLED")
        assert (filled.source, filled.exec_type, filled.last_qty, filled.last_price, filled.commission_asset) == \
            ("ws", "TRADE", Q, ask, "BTC")
        assert svc.wait_update("M1", "CANCELED").source == "ws"
        assert svc.updates("spot-x") == [] and svc.updates("spot-y") == []  # spot orders are not this stream's
        hb = json.loads(svc.r.get(svc.prefix + "hb:user_stream"))
        assert hb["info"]["connected"] is True and hb["info"]["wallet"] == "cross"
        _assert_feeds_trust_the_stream(svc)

        paper.post("/admin/faults", {"ws_drop": 1})  # a drop: reconnect with a new token, as the spot path does
        svc.wait_subscribed(2)
        cross.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 110, time_in_force="GTC", client_order_id="M3")
        assert svc.wait_update("M3", "NEW").source == "ws"
        assert svc.events("stream_missed_updates") == []
    finally:
        svc.close()


def _assert_feeds_trust_the_stream(svc: Service) -> None:
    """The engine's and the exit manager's feeds, in margin mode, rely on this connected stream (no REST polling)."""
    rt = Runtime(load_config(svc.env), "test")
    try:
        assert OrderFeed(rt, margin=True).stream_ok() and ExitFeed(rt, margin=True).stream_ok()
    finally:
        rt.r.close()


def test_margin_silent_stream_is_noticed_by_the_margin_cross_check(tmp_path, redis_url, paper, cross):
    svc = _margin_service(tmp_path, redis_url, paper, isolated=False)
    svc.start()
    try:
        svc.wait_subscribed(1)
        paper.post("/admin/faults", {"ws_silent": -1})  # events are swallowed; the connection stays open
        bid, _ = cross.book_ticker(SYMBOL)
        cross.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="mquiet")
        missed = wait_until(lambda: svc.events("stream_missed_updates"), 10, 0.02, "the cross-check's report")
        assert missed[0].data["client_order_ids"] == ["mquiet"]
        assert svc.wait_update("mquiet", "NEW").source == "rest"
        svc.wait_subscribed(2)  # and it reconnected
        paper.post("/admin/faults", {"clear": True})
        cross.cancel_order(SYMBOL, client_order_id="mquiet")
        assert svc.wait_update("mquiet", "CANCELED").source == "ws"
        assert len(svc.updates("mquiet")) == 2
    finally:
        svc.close()


def test_isolated_margin_mode_follows_the_isolated_wallet(tmp_path, redis_url, paper, cross, iso):
    svc = _margin_service(tmp_path, redis_url, paper, isolated=True)
    svc.start()
    try:
        svc.wait_subscribed(1)
        assert svc.events("stream_subscribed")[0].data["wallet"] == "isolated"
        bid, _ = iso.book_ticker(SYMBOL)
        cross.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="C1")
        iso.place_order(SYMBOL, "SELL", "MARKET", Q, client_order_id="I1")
        filled = svc.wait_update("I1", "FILLED")
        assert (filled.source, filled.side, filled.executed_qty) == ("ws", "SELL", Q)
        assert svc.updates("C1") == []  # the cross order came first and is not this wallet's
    finally:
        svc.close()


def test_renew_delay_is_half_the_time_left():
    now = 1_700_000_000_000
    assert renew_delay_sec(now + 24 * 3600 * 1000, now) == 12 * 3600
    assert renew_delay_sec(now + 3000, now) == 1.5
    assert renew_delay_sec(now - 5000, now) == RENEW_MIN_SEC  # already late: at once (not in the past)


def _in_process(tmp: Path, redis_url: str, paper: PaperProc, **kw: Any) -> tuple[Runtime, UserStream, threading.Thread]:
    """The cross-margin service object running `step()` in a thread of this process (stop: `rt.stopping = True`)."""
    cfg = load_config({**service_env(tmp, redis_url, paper, f"us{next(_prefixes)}:"), **MARGIN,
                       "MARGIN_ISOLATED": "false"})
    rt = Runtime(cfg, "user_stream")
    us = UserStream(rt, rt.client(), **kw)

    def loop() -> None:
        while not rt.stopping:
            us.step()
    runner = threading.Thread(target=loop, name="user_stream", daemon=True)
    runner.start()
    return rt, us, runner


def _stream(rt: Runtime, name: str) -> list[Any]:
    return [decode_fields(f) for _id, f in rt.r.xrange(rt.cfg.key(name))]


def test_margin_subscription_is_renewed_before_it_lapses(tmp_path, redis_url, paper, cross):
    """2 s tokens (the exchange would end the subscription 2 s after each): the service must extend the same
    subscription again and again, with no lapse and no reconnect."""
    rt, us, runner = _in_process(tmp_path, redis_url, paper, token_validity_ms=2000)
    try:
        wait_until(lambda: us.connected, 20, 0.02, "the margin subscription")
        sid, first_expiry = us.subscription_id, us.token_expires_ms
        wait_until(lambda: time.time() * 1000 > first_expiry + 1500, 10, 0.05, "the first token's expiry to pass")
        bid, _ = cross.book_ticker(SYMBOL)
        cross.place_order(SYMBOL, "BUY", "LIMIT", Q, price=bid - 100, time_in_force="GTC", client_order_id="R1")
        u = wait_until(lambda: next((m for m in _stream(rt, "orders") if m.client_order_id == "R1"), None),
                       10, 0.02, "R1 on the orders stream")
        assert u.source == "ws"
        assert us.connected and us.subscription_id == sid and us.token_expires_ms > first_expiry + 1500
        assert [e.kind for e in _stream(rt, "events")].count("stream_subscribed") == 1  # no lapse, no reconnect
    finally:
        rt.stopping = True
        runner.join(timeout=10)
        us.client.close()
        rt.r.close()
    assert not runner.is_alive()
