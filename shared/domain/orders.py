"""Typed Binance order structs, decoded straight from Binance JSON (numbers sent as strings -> Decimal).

Field names are snake_case in Python and camelCase on the wire (`rename="camel"`), so
`msgspec.json.decode(body, type=Order)` reads a Binance order response as is.
"""
from __future__ import annotations

from decimal import Decimal

import msgspec

NEW = "NEW"
PARTIALLY_FILLED = "PARTIALLY_FILLED"
FILLED = "FILLED"
CANCELED = "CANCELED"
EXPIRED = "EXPIRED"
REJECTED = "REJECTED"
PENDING_NEW = "PENDING_NEW"
EXPIRED_IN_MATCH = "EXPIRED_IN_MATCH"

OPEN_STATUSES = frozenset({NEW, PARTIALLY_FILLED, PENDING_NEW})
FINAL_STATUSES = frozenset({FILLED, CANCELED, EXPIRED, REJECTED, EXPIRED_IN_MATCH})

_ZERO = Decimal(0)


class Fill(msgspec.Struct, rename="camel"):
    """One execution reported in a FULL new-order response."""
    price: Decimal
    qty: Decimal
    commission: Decimal = _ZERO
    commission_asset: str = ""
    trade_id: int = -1


class Order(msgspec.Struct, rename="camel"):
    """An order as Binance reports it (new-order FULL, query, cancel and list reports share this shape).

    For a cancel response Binance puts the cancel request's own id in `clientOrderId` and the
    order's id in `origClientOrderId`; `BinanceClient.cancel_order` swaps them back so that
    `client_order_id` is always the order's own id.
    """
    symbol: str
    order_id: int
    client_order_id: str = ""
    price: Decimal = _ZERO
    orig_qty: Decimal = _ZERO
    executed_qty: Decimal = _ZERO
    cummulative_quote_qty: Decimal = _ZERO
    status: str = NEW
    time_in_force: str = ""
    type: str = ""
    side: str = ""
    order_list_id: int = -1
    stop_price: Decimal = _ZERO
    orig_quote_order_qty: Decimal = _ZERO
    time: int = 0
    update_time: int = 0
    transact_time: int = 0
    working_time: int = 0
    is_working: bool = True
    orig_client_order_id: str = ""
    fills: list[Fill] = msgspec.field(default_factory=list)
    # Expiries (2026): why the exchange expired it (CHANGELOG 2026-03-09 / 2026-05-06; only on EXPIRED orders,
    # e.g. EXECUTION_RULE_PRICE_RANGE_EXCEEDED), and self-trade prevention (status EXPIRED_IN_MATCH).
    expiry_reason: str = ""
    self_trade_prevention_mode: str = ""
    prevented_match_id: int = -1
    prevented_quantity: Decimal = _ZERO
    # Margin responses only.
    is_isolated: bool = False
    margin_buy_borrow_amount: Decimal = _ZERO
    margin_buy_borrow_asset: str = ""


class OrderRef(msgspec.Struct, rename="camel"):
    """A member of an order list: just enough to find the order."""
    symbol: str
    order_id: int
    client_order_id: str


class OrderList(msgspec.Struct, rename="camel"):
    """An order list (OCO) as Binance reports it."""
    order_list_id: int
    contingency_type: str
    list_status_type: str
    list_order_status: str
    list_client_order_id: str
    transaction_time: int
    symbol: str
    orders: list[OrderRef] = msgspec.field(default_factory=list)
    order_reports: list[Order] = msgspec.field(default_factory=list)


class Trade(msgspec.Struct, rename="camel"):
    """One entry of `GET /api/v3/myTrades`."""
    symbol: str
    id: int
    order_id: int
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool
    order_list_id: int = -1
    is_best_match: bool = True


class MarginBalance(msgspec.Struct, rename="camel"):
    """One asset of a margin account (cross `userAssets` entry or one side of an isolated pair)."""
    asset: str
    free: Decimal
    locked: Decimal
    borrowed: Decimal = _ZERO
    interest: Decimal = _ZERO
    net_asset: Decimal = _ZERO


def expired_by_exchange(status: str) -> bool:
    """The exchange, not we, ended the order without filling it all: EXPIRED (IOC/FOK rest, OCO sibling, price
    range execution rule, ...) or EXPIRED_IN_MATCH (self-trade prevention). A stop leg ending so is a position
    without a stop."""
    return status in (EXPIRED, EXPIRED_IN_MATCH)


def order_is_open(o: Order) -> bool:
    """True while the order can still fill (NEW, PARTIALLY_FILLED, PENDING_NEW)."""
    return o.status in OPEN_STATUSES


def avg_fill_price(o: Order) -> Decimal | None:
    """Average execution price (quote spent / base filled), or None when nothing has filled."""
    if o.executed_qty <= 0:
        return None
    if o.cummulative_quote_qty > 0:
        return o.cummulative_quote_qty / o.executed_qty
    # Some responses (e.g. list reports) lack the quote total: fall back to the fills.
    qty = sum((f.qty for f in o.fills), _ZERO)
    if qty <= 0:
        return None
    return sum((f.price * f.qty for f in o.fills), _ZERO) / qty
