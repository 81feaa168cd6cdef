"""Request parameter parsing with Binance's error codes (-1100, -1102)."""
from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from urllib.parse import parse_qsl

from services.paper_exchange.model import ApiError, NewOrder
from services.paper_exchange.rules import mandatory

_DECIMAL_RE = re.compile(r"^([0-9]{1,20})(\.[0-9]{1,20})?$")
_INT_RE = re.compile(r"^-?[0-9]{1,20}$")
_CLIENT_ID_RE = re.compile(r"^[.A-Z:/a-z0-9_-]{1,36}$")  # Binance's -1100 text names this range


def parse(query: str, body: str) -> dict[str, str]:
    """Query string and form body merged, values URL-decoded.

    As Binance: a parameter sent in both the query string and the body takes the query string's value;
    a parameter repeated within one of them is -1101.
    """
    out: dict[str, str] = {}
    for raw in (query, body):
        part: dict[str, str] = {}
        for k, v in parse_qsl(raw, keep_blank_values=True):
            if k in part:
                raise ApiError(-1101, "Duplicate values for a parameter detected.")
            part[k] = v
        for k, v in part.items():
            out.setdefault(k, v)
    return out


def dec(p: Mapping[str, str], name: str, required: bool = False) -> Decimal | None:
    """A decimal parameter; -1100 when malformed, -1102 when required and missing."""
    raw = p.get(name)
    if raw is None or raw == "":
        if required:
            raise mandatory(name)
        return None
    if not _DECIMAL_RE.match(raw):
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; "
                              "legal range is '^([0-9]{1,20})(\\.[0-9]{1,20})?$'.")
    return Decimal(raw)


def integer(p: Mapping[str, str], name: str) -> int | None:
    """An integer parameter or None; -1100 when malformed."""
    raw = p.get(name)
    if raw is None or raw == "":
        return None
    if not _INT_RE.match(raw):
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; legal range is '^[0-9]{{1,20}}$'.")
    return int(raw)


def limit(p: Mapping[str, str], default: int, maximum: int) -> int:
    """A `limit` parameter: `default` when absent; -1100 when malformed, -1130 (Binance's INVALID_PARAMETER, what it
    answers an over-large limit elsewhere; the allOrders docs name no code) outside 1..`maximum`, never clamped."""
    n = integer(p, "limit")
    if n is None:
        return default
    if not 1 <= n <= maximum:
        raise ApiError(-1130, "Data sent for parameter 'limit' is not valid.")
    return n


def time_range(p: Mapping[str, str], max_ms: int) -> tuple[int | None, int | None]:
    """(startTime, endTime), each None when absent; -1127 when both are sent more than `max_ms` apart."""
    start, end = integer(p, "startTime"), integer(p, "endTime")
    if start is not None and end is not None and end - start > max_ms:
        raise ApiError(-1127, f"More than {max_ms // 3_600_000} hours between startTime and endTime.")
    return start, end


def client_id(p: Mapping[str, str], name: str) -> str:
    """A client order id ('' when absent); -1100 unless it matches ^[\\.A-Z\\:/a-z0-9_-]{1,36}$ (reserved ':' and '/'
    included: a client must percent-encode them before signing)."""
    raw = p.get(name, "")
    if raw and not _CLIENT_ID_RE.match(raw):
        raise ApiError(-1100, f"Illegal characters found in parameter '{name}'; "
                              "legal range is '^[\\.A-Z\\:/a-z0-9_-]{1,36}$'.")
    return raw


def required(p: Mapping[str, str], name: str) -> str:
    """A mandatory string parameter."""
    v = p.get(name, "")
    if not v:
        raise mandatory(name)
    return v


def new_order(p: Mapping[str, str], prefix: str = "", cid_name: str = "newClientOrderId") -> NewOrder:
    """A NewOrder from request parameters; `prefix` is "above"/"below" for OCO legs."""
    def key(n: str) -> str:
        return prefix + n[0].upper() + n[1:] if prefix else n
    return NewOrder(
        side=p.get("side", ""), type=required(p, key("type")),
        quantity=dec(p, "quantity"), quote_qty=None if prefix else dec(p, "quoteOrderQty"),
        price=dec(p, key("price")), stop_price=dec(p, key("stopPrice")),
        time_in_force=p.get(key("timeInForce"), ""), client_order_id=client_id(p, cid_name),
        stp_mode=p.get("selfTradePreventionMode", ""),
    )
