"""Conformance harness: the paper exchange as a real process, driven by clients we did not write.

* `binance-sdk-spot` / `binance-sdk-margin-trading` (Binance's official connectors): every reply is parsed into
  the SDK's pydantic models. When a model does not fit, the SDK does not raise: it logs a warning, relaxes
  the model (globally, in place) or hands back the raw JSON. `sdk_data` therefore fails the test on any such
  warning and on a reply that did not become a model.
* `python-binance`: sorts parameters before signing and sends POST/DELETE parameters as a form body, so it
  catches a server that re-encodes or reorders instead of checking the bytes it received.

A plain module (not conftest.py): test files import the fixtures they need from here.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import requests
from binance.client import Client as PyBinanceClient
from binance.exceptions import BinanceAPIException
from binance_common.configuration import ConfigurationRestAPI
from binance_common.errors import Error as SdkError
from binance_sdk_margin_trading.margin_trading import MarginTrading
from binance_sdk_spot.spot import Spot
from pydantic import BaseModel

from tests.pe_helpers import KEY, SECRET, SYMBOL, paper_env, start_process

__all__ = ["KEY", "SECRET", "SYMBOL", "Exchange", "ModelWarnings", "exchange", "sdk_data", "sdk_error",
           "spot", "margin", "pyb", "pyb_error", "D", "val"]

D = Decimal
QTY = D("0.001")


class ModelWarnings(logging.Handler):
    """Collects the SDK's "response did not match the declared types" / "Failed to parse" warnings."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if "did not match the declared types" in msg or "Failed to parse" in msg:
            self.messages.append(msg)


_WARNINGS = ModelWarnings()
logging.getLogger().addHandler(_WARNINGS)


_seen = [0]  # warnings already accounted for


def _only_fields(msg: str, fields: frozenset[str]) -> bool:
    """True when every validation error in an SDK warning is about one of `fields`."""
    m = re.search(r"(\d+) validation errors? for \w+\n(.*)", msg, re.S)
    if not m:
        return False
    names = [line.strip() for line in m.group(2).splitlines() if line and not line.startswith(" ")]
    return len(names) == int(m.group(1)) and all(n in fields for n in names)


def sdk_data(resp: Any, lenient: frozenset[str] = frozenset()) -> Any:
    """The SDK's parsed model of a reply; fails unless it parsed strictly (no relaxing, no raw fallback).

    The SDK parses (and warns) inside the call itself, so every warning since the previous check counts.
    `lenient`: fields where Binance's documented type and the SDK model's type disagree (see the tests);
    a mismatch on those alone is allowed, and the reply may then come back relaxed or as raw JSON.
    """
    data = resp.data()
    new = _WARNINGS.messages[_seen[0]:]
    _seen[0] = len(_WARNINGS.messages)
    if lenient and new and all(_only_fields(m, lenient) for m in new):
        assert resp.status == 200
        return data
    assert not new, f"the official SDK could not parse the reply strictly: {new}"
    inner = getattr(data, "actual_instance", data)  # oneOf wrappers
    if isinstance(inner, list):
        assert all(isinstance(x, BaseModel) for x in inner), f"reply not parsed into models: {inner!r}"
    else:
        assert isinstance(data, BaseModel), f"reply not parsed into a model: {data!r}"
    assert resp.status == 200
    return data


def val(obj: Any, camel: str) -> Any:
    """A field of an SDK model (snake_case attribute) or of raw JSON (camelCase key)."""
    if isinstance(obj, dict):
        return obj.get(camel)
    return getattr(obj, re.sub(r"(?<!^)([A-Z])", lambda m: "_" + m.group(1).lower(), camel))


def sdk_error(call: Callable[[], Any]) -> SdkError:
    """Run an SDK call that must fail; return the SDK's exception (status_code = Binance code)."""
    with pytest.raises(SdkError) as ei:
        call()
    return ei.value


def pyb_error(call: Callable[[], Any]) -> BinanceAPIException:
    """Run a python-binance call that must fail; return its BinanceAPIException."""
    with pytest.raises(BinanceAPIException) as ei:
        call()
    return ei.value


@dataclass
class Exchange:
    """The paper exchange process: its URL plus admin calls (price pushes, state)."""
    url: str
    http: requests.Session

    def admin(self, path: str, body: dict[str, Any] | None = None) -> Any:
        """GET (no body) or POST JSON to an admin endpoint."""
        r = (self.http.get(self.url + path, timeout=5) if body is None
             else self.http.post(self.url + path, json=body, timeout=5))
        r.raise_for_status()
        return r.json()

    def price(self, p: str | Decimal) -> None:
        """Push a price point (matching runs)."""
        self.admin("/admin/price", {"price": str(p)})

    def book(self) -> tuple[Decimal, Decimal]:
        """(bid, ask) now."""
        st = self.admin("/admin/state")
        return D(st["bid"]), D(st["ask"])

    def order(self, order_id: int) -> dict[str, Any]:
        """The exchange's own record of one order."""
        return next(o for o in self.admin("/admin/orders") if o["orderId"] == order_id)

    def raw(self, method: str, path: str, query: str = "", body: str = "",
            headers: dict[str, str] | None = None) -> requests.Response:
        """A hand-built request (bytes exactly as given)."""
        url = self.url + path + (f"?{query}" if query else "")
        h = {"X-MBX-APIKEY": KEY, **({"Content-Type": "application/x-www-form-urlencoded"} if body else {}),
             **(headers or {})}
        return self.http.request(method, url, data=body.encode() if body else None, headers=h, timeout=5)


@pytest.fixture(scope="module")
def exchange(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exchange]:
    """One paper exchange process (manual speed) per test module; tests within a module share it."""
    tmp: Path = tmp_path_factory.mktemp("conformance")
    env = paper_env(tmp, PAPER_BALANCES="USDC=100000,BTC=2", PAPER_FSYNC="0", PAPER_SNAPSHOT_EVERY="100000",
                    PAPER_MARGIN_LEVERAGE="3")
    proc, url = start_process(env)
    ex = Exchange(url, requests.Session())
    ex.price("60000.00")
    try:
        yield ex
    finally:
        ex.http.close()
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except Exception:  # noqa: BLE001 - a stuck child must not hang the session
            proc.kill()
            proc.wait(timeout=5)


def _config(url: str) -> ConfigurationRestAPI:
    # retries=0: a 5xx must surface at once; timeout in ms.
    return ConfigurationRestAPI(api_key=KEY, api_secret=SECRET, base_path=url, timeout=5000, retries=0)


@pytest.fixture(scope="module")
def spot(exchange: Exchange) -> Any:
    """binance-sdk-spot's REST API pointed at the paper exchange (ConfigurationRestAPI.base_path)."""
    return Spot(config_rest_api=_config(exchange.url)).rest_api


@pytest.fixture(scope="module")
def margin(exchange: Exchange) -> Any:
    """binance-sdk-margin-trading's REST API pointed at the paper exchange."""
    return MarginTrading(config_rest_api=_config(exchange.url)).rest_api


@pytest.fixture(scope="module")
def pyb(exchange: Exchange) -> Iterator[PyBinanceClient]:
    """python-binance's Client; its URLs are instance attributes formatted in __init__, so override them."""
    c = PyBinanceClient(KEY, SECRET, ping=False)
    c.API_URL = exchange.url + "/api"
    c.MARGIN_API_URL = exchange.url + "/sapi"
    yield c
    c.close_connection()


@pytest.fixture(autouse=True)
def _clean_book(request: pytest.FixtureRequest) -> Iterator[None]:
    """Each test starts at 60000 with no open orders (the module's process is shared)."""
    if "exchange" not in request.fixturenames:
        yield
        return
    ex: Exchange = request.getfixturevalue("exchange")
    ex.price("60000.00")
    _seen[0] = len(_WARNINGS.messages)
    yield
    _cancel_all(ex)


def _signed(q: str) -> str:
    return f"{q}&signature={hmac.new(SECRET.encode(), q.encode(), hashlib.sha256).hexdigest()}"


def _cancel_all(ex: Exchange) -> None:
    for path, extra in (("/api/v3/openOrders", ""), ("/sapi/v1/margin/openOrders", ""),
                        ("/sapi/v1/margin/openOrders", "&isIsolated=TRUE")):
        r = ex.raw("GET", path, _signed(f"symbol={SYMBOL}{extra}&timestamp={int(time.time() * 1000)}"))
        for o in r.json() if r.status_code == 200 else []:
            cancel = path.replace("openOrders", "order")
            ex.raw("DELETE", cancel, _signed(f"symbol={SYMBOL}{extra}&orderId={o['orderId']}"
                                             f"&timestamp={int(time.time() * 1000)}"))
