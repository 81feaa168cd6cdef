"""The paper exchange's internal records (persisted as they are) and its API error type."""
from __future__ import annotations

from decimal import Decimal

import msgspec

ZERO = Decimal(0)
LIMIT_TYPES = frozenset({"LIMIT", "LIMIT_MAKER", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT"})
STOP_TYPES = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT"})
ORDER_TYPES = frozenset({"LIMIT", "MARKET", "LIMIT_MAKER"}) | STOP_TYPES
OPEN = frozenset({"NEW", "PARTIALLY_FILLED"})
SPOT, CROSS, ISOLATED = "SPOT", "CROSS", "ISOLATED"  # the three wallets of the one account
BORROW_EFFECTS = frozenset({"MARGIN_BUY", "AUTO_BORROW_REPAY"})
REPAY_EFFECTS = frozenset({"AUTO_REPAY", "AUTO_BORROW_REPAY"})
SIDE_EFFECTS = frozenset({"NO_SIDE_EFFECT"}) | BORROW_EFFECTS | REPAY_EFFECTS


class ApiError(Exception):
    """A Binance-style error reply: HTTP status plus {"code", "msg"} (and optional "data")."""

    def __init__(self, code: int, msg: str, http: int = 400, data: dict | None = None):
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg
        self.http = http
        self.data = data


def rejected(msg: str) -> ApiError:
    """The generic -2010 'new order rejected'."""
    return ApiError(-2010, msg)


def filter_failure(name: str) -> ApiError:
    """-1013 for one symbol filter."""
    return ApiError(-1013, f"Filter failure: {name}")


class PFill(msgspec.Struct):
    """One execution of an order."""
    price: Decimal
    qty: Decimal
    commission: Decimal
    commission_asset: str
    trade_id: int


class PTrade(msgspec.Struct):
    """One myTrades entry."""
    id: int
    order_id: int
    order_list_id: int
    price: Decimal
    qty: Decimal
    quote_qty: Decimal
    commission: Decimal
    commission_asset: str
    time: int
    is_buyer: bool
    is_maker: bool
    account: str = SPOT


class PLock(msgspec.Struct):
    """Balance locked for open orders. An OCO's legs share one lock (its quantity is locked once)."""
    asset: str
    per_unit: Decimal  # locked amount per unit of base quantity (1 for a SELL, the limit price for a BUY)
    qty: Decimal  # base quantity still covered by the lock
    holders: list[int]
    account: str = SPOT


class POrder(msgspec.Struct):
    """One order, open or final. Times are MARKET time in epoch ms."""
    order_id: int
    client_order_id: str
    side: str
    type: str
    time_in_force: str
    orig_qty: Decimal
    price: Decimal = ZERO
    stop_price: Decimal = ZERO
    orig_quote_qty: Decimal = ZERO
    executed_qty: Decimal = ZERO
    cum_quote: Decimal = ZERO
    status: str = "NEW"
    order_list_id: int = -1
    time: int = 0
    update_time: int = 0
    working_time: int = -1
    is_working: bool = True
    lock_id: int = 0
    fills: list[PFill] = msgspec.field(default_factory=list)
    account: str = SPOT
    side_effect: str = ""
    borrowed_amount: Decimal = ZERO
    borrowed_asset: str = ""
    stp_mode: str = "EXPIRE_MAKER"   # selfTradePreventionMode (the symbol's default when not sent)
    expiry_reason: str = ""          # expiryReason / eR of an EXPIRED order ('' = none reported)
    prevented_qty: Decimal = ZERO    # preventedQuantity / A: expired by self-trade prevention
    prevented_match_id: int = -1     # preventedMatchId / v
    auto_repay_at_cancel: bool = True   # margin: repay what the order borrowed if it is cancelled (repay_at_cancel.py)

    @property
    def remaining(self) -> Decimal:
        """Base quantity still to fill."""
        return self.orig_qty - self.executed_qty

    @property
    def is_open(self) -> bool:
        """NEW or PARTIALLY_FILLED."""
        return self.status in OPEN


class PList(msgspec.Struct):
    """An OCO order list."""
    order_list_id: int
    list_client_order_id: str
    transaction_time: int
    order_ids: list[int]
    list_status_type: str = "EXEC_STARTED"
    list_order_status: str = "EXECUTING"
    contingency_type: str = "OCO"
    account: str = SPOT


class Balance(msgspec.Struct):
    """free / locked of one asset (and, in a margin wallet, what is borrowed)."""
    free: Decimal = ZERO
    locked: Decimal = ZERO
    borrowed: Decimal = ZERO
    interest: Decimal = ZERO


class EngineState(msgspec.Struct):
    """Everything the engine knows; persisted whole after every mutation."""
    symbol: str
    balances: dict[str, Balance]
    last: Decimal
    market_ms: int
    orders: dict[int, POrder] = msgspec.field(default_factory=dict)
    lists: dict[int, PList] = msgspec.field(default_factory=dict)
    locks: dict[int, PLock] = msgspec.field(default_factory=dict)
    trades: list[PTrade] = msgspec.field(default_factory=list)
    next_order_id: int = 1
    next_list_id: int = 1
    next_trade_id: int = 1
    next_lock_id: int = 1
    margin: dict[str, dict[str, Balance]] = msgspec.field(default_factory=dict)  # CROSS / ISOLATED wallets
    next_tran_id: int = 1
    feed_last: Decimal | None = None  # the feed symbol's last price (None: the same as `last`, no basis)
    next_prevented_match_id: int = 1


class NewOrder(msgspec.Struct):
    """A validated-for-syntax new order request (business rules are the engine's)."""
    side: str
    type: str
    quantity: Decimal | None = None
    quote_qty: Decimal | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    time_in_force: str = ""
    client_order_id: str = ""
    account: str = SPOT
    side_effect: str = ""
    stp_mode: str = ""   # selfTradePreventionMode as sent ('' = the symbol's default)
    auto_repay_at_cancel: bool = True
