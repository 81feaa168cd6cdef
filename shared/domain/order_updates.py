"""Order updates as the exchange reports them, for the `orders` stream (written by user_stream).

`OrderUpdate` maps Binance's `executionReport` (WebSocket user data stream, source "ws") or an order as REST
reports it when the stream missed a change (source "rest": cumulative fields are exact; `last_*` is the change
since the previous update we published, commission unknown). `ListUpdate` maps `listStatus`.
Pure: parsing functions only, no I/O. Money is Decimal.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec

from shared.domain.orders import OPEN_STATUSES, Order

_ZERO = Decimal(0)
Source = Literal["ws", "rest"]


class OrderUpdate(msgspec.Struct, tag="order_update", kw_only=True):
    """One change of one order (new, trade, stop trigger, cancel, expire)."""
    v: int = 1
    symbol: str
    client_order_id: str            # the order's own client id (for a cancel: Binance's "C", not the cancel's "c")
    order_id: int
    order_list_id: int = -1
    side: str
    order_type: str                 # o (not `type`: that is the stream union's tag field)
    status: str                     # X: NEW, PARTIALLY_FILLED, FILLED, CANCELED, EXPIRED, ...
    exec_type: str                  # x: NEW, TRADE, CANCELED, EXPIRED, REJECTED, ... (derived for source "rest")
    time_in_force: str = ""
    price: Decimal = _ZERO
    stop_price: Decimal = _ZERO
    orig_qty: Decimal = _ZERO
    executed_qty: Decimal = _ZERO   # z: cumulative
    cum_quote: Decimal = _ZERO      # Z: cumulative quote
    last_qty: Decimal = _ZERO       # l
    last_price: Decimal = _ZERO     # L
    commission: Decimal = _ZERO     # n (of this trade)
    commission_asset: str = ""      # N
    trade_id: int = -1              # t
    is_maker: bool = False          # m
    reject_reason: str = "NONE"     # r
    event_time: int = 0             # E (ms)
    transact_time: int = 0          # T (ms)
    is_working: bool = True         # w
    source: Source = "ws"
    # 2026: why the exchange expired it (eR / expiryReason, '' = not said; e.g. EXECUTION_RULE_PRICE_RANGE_EXCEEDED,
    # OCO_TRIGGER) and self-trade prevention (status EXPIRED_IN_MATCH, exec_type TRADE_PREVENTION): v, A, B
    expiry_reason: str = ""
    prevented_match_id: int = -1
    prevented_qty: Decimal = _ZERO

    @property
    def is_open(self) -> bool:
        """The order can still fill."""
        return self.status in OPEN_STATUSES


class ListOrder(msgspec.Struct, kw_only=True):
    """A member of an order list."""
    symbol: str
    order_id: int
    client_order_id: str


class ListUpdate(msgspec.Struct, tag="list_update", kw_only=True):
    """A change of an order list (OCO): Binance's `listStatus`."""
    v: int = 1
    symbol: str
    order_list_id: int
    contingency_type: str
    list_status_type: str           # RESPONSE, EXEC_STARTED, ALL_DONE
    list_order_status: str          # EXECUTING, ALL_DONE, REJECT
    list_reject_reason: str = "NONE"
    list_client_order_id: str
    transaction_time: int = 0
    event_time: int = 0
    orders: list[ListOrder] = []
    source: Source = "ws"


def _dec(v: Any) -> Decimal:
    return Decimal(str(v)) if v not in (None, "") else _ZERO


def from_execution_report(ev: dict[str, Any]) -> OrderUpdate:
    """An executionReport event (Binance field names) -> OrderUpdate. KeyError/ValueError when malformed."""
    cancel_of = ev.get("C") or ""
    return OrderUpdate(
        symbol=ev["s"], client_order_id=cancel_of if ev.get("X") == "CANCELED" and cancel_of else ev["c"],
        order_id=int(ev["i"]), order_list_id=int(ev.get("g", -1)), side=ev["S"], order_type=ev["o"], status=ev["X"],
        exec_type=ev["x"], time_in_force=ev.get("f", ""), price=_dec(ev.get("p")), stop_price=_dec(ev.get("P")),
        orig_qty=_dec(ev.get("q")), executed_qty=_dec(ev.get("z")), cum_quote=_dec(ev.get("Z")),
        last_qty=_dec(ev.get("l")), last_price=_dec(ev.get("L")), commission=_dec(ev.get("n")),
        commission_asset=ev.get("N") or "", trade_id=int(ev.get("t", -1)), is_maker=bool(ev.get("m", False)),
        reject_reason=ev.get("r", "NONE"), event_time=int(ev.get("E", 0)), transact_time=int(ev.get("T", 0)),
        is_working=bool(ev.get("w", True)), source="ws", expiry_reason=_reason(ev.get("eR")),
        prevented_match_id=int(ev.get("v", -1)), prevented_qty=_dec(ev.get("A")),
    )


def _reason(v: Any) -> str:
    """An expiry reason; Binance's "NONE" (no reason) is kept as ''."""
    return "" if v in (None, "", "NONE") else str(v)


def from_list_status(ev: dict[str, Any]) -> ListUpdate:
    """A listStatus event -> ListUpdate."""
    return ListUpdate(
        symbol=ev["s"], order_list_id=int(ev["g"]), contingency_type=ev.get("c", "OCO"), list_status_type=ev["l"],
        list_order_status=ev["L"], list_reject_reason=ev.get("r", "NONE"), list_client_order_id=ev.get("C", ""),
        transaction_time=int(ev.get("T", 0)), event_time=int(ev.get("E", 0)),
        orders=[ListOrder(symbol=o["s"], order_id=int(o["i"]), client_order_id=o["c"]) for o in ev.get("O", [])],
    )


_EXEC_TYPE = {"NEW": "NEW", "PARTIALLY_FILLED": "TRADE", "FILLED": "TRADE", "CANCELED": "CANCELED",
              "EXPIRED": "EXPIRED", "REJECTED": "REJECTED", "EXPIRED_IN_MATCH": "TRADE_PREVENTION",
              "PENDING_NEW": "NEW"}


def from_rest(o: Order, prev_executed: Decimal = _ZERO, prev_cum_quote: Decimal = _ZERO) -> OrderUpdate:
    """An order as REST reports it -> OrderUpdate (source "rest"); `prev_*`: what was last published of it."""
    last_qty = o.executed_qty - prev_executed
    last_quote = o.cummulative_quote_qty - prev_cum_quote
    if last_qty > 0:
        exec_type = "TRADE"
    elif o.status in ("PARTIALLY_FILLED", "FILLED"):
        exec_type = "NEW"  # no new fill since we last published: a trigger (isWorking) or a first sighting
    else:
        exec_type = _EXEC_TYPE.get(o.status, o.status)
    at = o.update_time or o.transact_time or o.time
    return OrderUpdate(
        symbol=o.symbol, client_order_id=o.client_order_id, order_id=o.order_id, order_list_id=o.order_list_id,
        side=o.side, order_type=o.type, status=o.status, exec_type=exec_type, time_in_force=o.time_in_force,
        price=o.price, stop_price=o.stop_price, orig_qty=o.orig_qty, executed_qty=o.executed_qty,
        cum_quote=o.cummulative_quote_qty, last_qty=last_qty if last_qty > 0 else _ZERO,
        last_price=(last_quote / last_qty) if last_qty > 0 else _ZERO, event_time=at, transact_time=at,
        is_working=o.is_working, source="rest", expiry_reason=_reason(o.expiry_reason),
        prevented_match_id=o.prevented_match_id, prevented_qty=o.prevented_quantity,
    )


def progress(status: str, executed_qty: Decimal, is_working: bool) -> tuple[int, Decimal, int]:
    """How far an order has come: each real change (trade, trigger, cancel/expire) makes this strictly larger,
    so an update that does not is old news (e.g. a late stream event after REST already told us)."""
    return (0 if status in OPEN_STATUSES else 1, executed_qty, 1 if is_working else 0)
