"""Each trade's own records on the exchange, whatever the length of the history (issue 25).

Binance answers `allOrders` with one page (spot at most 1000 orders, margin 500, margin without a range only the
last 24 hours) and refuses a `startTime`/`endTime` range over 24 hours (-1127). So the report never reads "the
recent orders": for each trade it finds the trade's entry by its deterministic client order id (GET order), then
reads the orders from that orderId on, page after page, until an order placed after the trade closed; for a trade
whose entry cannot be found that way, the first order in time windows of at most 24 hours before it is the
starting point instead. Then
`myTrades` per executed order for the commissions. No trade can fall out of a window, however many orders came
after it.
"""
from __future__ import annotations

import msgspec

from shared.adapters.binance_rest import BinanceClient, NotFound
from shared.domain.order_ids import client_id, trade_key_of
from shared.domain.orders import Order, Trade

DAY_MS = 86_400_000
AFTER_CLOSE_MS = 60_000        # an order of the trade is never placed after it closed; a minute of margin
BEFORE_OPEN_MS = 6 * 3_600_000  # time-window fallback: how long before the first known time an entry may rest
ENTRY_ATTEMPTS = (0, 1, 2)     # entry client ids: attempt 0 (limit), then the re-placed ones (Plan B)


class Span(msgspec.Struct, frozen=True):
    """What the report knows of a trade's time on the exchange (market ms): first known time, close time."""
    trade_key: str
    first_ms: int
    closed_ms: int


class Found(msgspec.Struct):
    """A trade's orders and how they were found (said per trade in the report)."""
    orders: list[Order]
    how: str
    requests: int = 0


def page_size(client: BinanceClient) -> int:
    """The largest page Binance serves: allOrders 1000 on spot, 500 on margin."""
    return 500 if client.margin else 1000


def entry_order(client: BinanceClient, symbol: str, tk: str) -> tuple[Order | None, int]:
    """The trade's first entry order, by its client order id (attempts in order); requests made."""
    n = 0
    for attempt in ENTRY_ATTEMPTS:
        n += 1
        try:
            return client.get_order(symbol, client_order_id=client_id(tk, "entry", attempt)), n
        except NotFound:
            continue
    return None, n


def from_order_id(client: BinanceClient, symbol: str, first_id: int, until_ms: int, page: int) -> tuple[list[Order], int]:
    """Every order from `first_id` on, placed up to `until_ms`, page after page (a short page is not taken for
    the end: only an empty page or an order placed after `until_ms` is)."""
    out: list[Order] = []
    oid, n = first_id, 0
    while True:
        n += 1
        rows = client.all_orders(symbol, limit=page, order_id=oid)
        if not rows:
            return out, n
        out.extend(o for o in rows if o.time <= until_ms)
        if rows[-1].time > until_ms:
            return out, n
        oid = rows[-1].order_id + 1


def first_in_windows(client: BinanceClient, symbol: str, start_ms: int, end_ms: int, page: int) -> tuple[Order | None, int]:
    """The first order placed in [start_ms, end_ms], looked for window by window (at most 24 h each, Binance's
    limit). Only the first order is taken from a window: in a replay many orders share one market millisecond,
    so the rest is read by orderId, never by time."""
    n = 0
    w0 = start_ms
    while w0 <= end_ms:
        w1 = min(w0 + DAY_MS - 1, end_ms)
        n += 1
        rows = client.all_orders(symbol, limit=page, start_time=w0, end_time=w1)
        if rows:
            return min(rows, key=lambda o: o.order_id), n
        w0 = w1 + 1
    return None, n


def trade_orders(client: BinanceClient, symbol: str, span: Span) -> Found:
    """The trade's own orders (any status) and how they were found."""
    page = page_size(client)
    until = span.closed_ms + AFTER_CLOSE_MS
    anchor, n = entry_order(client, symbol, span.trade_key)
    how = "the entry by its client id"
    if anchor is None:
        start = max(0, span.first_ms - BEFORE_OPEN_MS)
        anchor, k = first_in_windows(client, symbol, start, until, page)
        n += k
        how = f"entry not found by client id: the first order in 24 h windows from {start} ms"
    if anchor is None:
        return Found([], how + ": none", n)
    rows, m = from_order_id(client, symbol, anchor.order_id, until, page)
    how = f"{how}, then allOrders from its orderId {anchor.order_id} ({m} page(s))"
    mine = [o for o in rows if trade_key_of(o.client_order_id) == span.trade_key]
    return Found(mine, how, n + m)


def order_trades(client: BinanceClient, symbol: str, o: Order) -> list[Trade]:
    """The executions of one order (myTrades by orderId; one order never has more than a page of them here:
    our orders are at most a few partial fills)."""
    return client.my_trades(symbol, order_id=o.order_id)
