"""Binance REST endpoints of the paper exchange (public and signed)."""
from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from typing import Any

from services.paper_exchange import filters, rules
from services.paper_exchange import params as P
from services.paper_exchange import views
from services.paper_exchange.app import PaperApp
from services.paper_exchange.model import SPOT, ApiError, NewOrder, POrder

Handler = Callable[[PaperApp, dict[str, str]], Any]


def _sym(app: PaperApp, p: dict[str, str], required: bool = True) -> str:
    """The traded symbol of an account request. The feed symbol is listed but this account may not trade it
    (as Binance answers for a symbol outside the account's permissions); anything else is -1121."""
    sym = p.get("symbol", "")
    if not sym and not required:
        return app.s.symbol
    if not sym:
        raise P.mandatory("symbol")
    if sym != app.s.symbol and sym in app.s.symbols:
        raise ApiError(-2010, "This symbol is not permitted for this account.")
    if sym != app.s.symbol:
        raise ApiError(-1121, "Invalid symbol.")
    return sym


# ---- public ----------------------------------------------------------------------------------

def ping(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/ping."""
    return {}


def server_time(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/time: WALL time (signatures and recvWindow are about wall time)."""
    return {"serverTime": int(time.time() * 1000)}


# ---- orders ----------------------------------------------------------------------------------

def new_order(app: PaperApp, p: dict[str, str]) -> Any:
    """POST /api/v3/order."""
    sym = _sym(app, p)
    req = P.new_order(p)
    market_notional(app, req)
    resp_type = resp_type_of(p, req.type)
    o = app.cmd.place(req)
    app.mark_placed(o.order_id)
    return _new_order_reply(o, sym, resp_type)


_RESP_TYPES = ("ACK", "RESULT", "FULL")


def resp_type_of(p: dict[str, str], order_type: str | None) -> str:
    """newOrderRespType as sent, else Binance's default: FULL for MARKET and LIMIT, ACK for every other type
    (an order list's legs are never MARKET or LIMIT: ACK). -1100 for a value outside ACK / RESULT / FULL."""
    raw = p.get("newOrderRespType", "")
    if not raw:
        return "FULL" if order_type in ("MARKET", "LIMIT") else "ACK"
    if raw not in _RESP_TYPES:
        raise ApiError(-1100, "Illegal characters found in parameter 'newOrderRespType'; legal range is "
                              "'ACK, RESULT, FULL'.")
    return raw


def market_notional(app: PaperApp, req: NewOrder) -> None:
    """Binance applies NOTIONAL to MARKET orders too (applyMinToMarket); the engine checks it only for
    priced orders, so a tiny market order is refused here, after the parameter-shape checks."""
    rules.check_shape(req)
    filters.check_market_notional(app.s, req, app.engine.st.last)


def _new_order_reply(o: POrder, sym: str, resp_type: str) -> Any:
    return views.order_reply(o, sym, resp_type)


def _ids(p: dict[str, str], id_name: str = "orderId", cid_name: str = "origClientOrderId") -> tuple[int | None, str]:
    oid, cid = P.integer(p, id_name), p.get(cid_name, "")
    if oid is None and not cid:
        raise ApiError(-1102, f"Param '{cid_name}' or '{id_name}' must be sent, but both were empty/null!")
    return oid, cid


def query_order(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/order."""
    sym = _sym(app, p)
    o = app.engine.find(*_ids(p))
    transient_2013(app, "/api/v3/order", o)
    return views.order_query(o, sym)


def transient_2013(app: PaperApp, path: str, o: POrder) -> None:
    """The transient_2013 fault: a query within `young_ms` (2 s) of placing answers -2013, as Binance sometimes
    does."""
    placed, f = app.placed_wall.get(o.order_id), app.faults.first("transient_2013", path, o.side)
    young = placed is not None and f is not None and time.monotonic() - placed < (f.value or 2.0)
    if young and app.faults.take("transient_2013", path, o.side):
        raise ApiError(-2013, "Order does not exist.")


def cancel_order(app: PaperApp, p: dict[str, str]) -> Any:
    """DELETE /api/v3/order."""
    sym = _sym(app, p)
    o = app.cmd.cancel(*_ids(p))
    cancel_cid = P.client_id(p, "newClientOrderId") or f"cancel-{o.order_id}"
    return views.order_cancel(o, sym, cancel_cid, app.engine.st.market_ms)


def open_orders(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/openOrders."""
    sym = _sym(app, p, required=False)
    return [views.order_query(o, sym) for o in app.engine.open_orders(SPOT)]


DAY_MS = 86_400_000


def all_orders(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/allOrders (limit: default 500, max 1000)."""
    sym = _sym(app, p)
    return [views.order_query(o, sym) for o in order_history(app, p, SPOT, max_limit=1000)]


def order_history(app: PaperApp, p: dict[str, str], account: str, max_limit: int,
                  recent_ms: int | None = None) -> list[POrder]:
    """The orders an allOrders request selects from `account`, oldest first, as Binance documents it.

    orderId: only ids >= it; startTime / endTime: only orders placed in that range (at most 24 h apart, -1127).
    A request that says where to start (orderId or startTime) gets the first `limit` orders from there, any other
    the most recent `limit`. `recent_ms`: without orderId and times, only the orders placed within that much
    market time (margin's allOrders answers "the orders within 24 hours")."""
    n = page_len(app, P.limit(p, 500, max_limit))
    oid = P.integer(p, "orderId")
    start, end = P.time_range(p, DAY_MS)
    from_start = oid is not None or start is not None
    if recent_ms is not None and oid is None and start is None and end is None:
        start = app.engine.st.market_ms - recent_ms
    picked = [o for _, o in sorted(app.engine.st.orders.items())
              if o.account == account and (oid is None or o.order_id >= oid)
              and (start is None or o.time >= start) and (end is None or o.time <= end)]
    return picked[:n] if from_start else picked[-n:]


def cancel_open_orders(app: PaperApp, p: dict[str, str]) -> Any:
    """DELETE /api/v3/openOrders: every open order (a list leg takes its list with it)."""
    sym = _sym(app, p)
    out = []
    for o in app.engine.open_orders(SPOT):
        if o.is_open:
            app.cmd.cancel(o.order_id)
            out.append(views.order_cancel(o, sym, f"cancel-{o.order_id}", app.engine.st.market_ms))
    return out


def account(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/account."""
    rate = int(app.s.fee_rate * 10000)
    return {
        "makerCommission": rate, "takerCommission": rate, "buyerCommission": 0, "sellerCommission": 0,
        "canTrade": True, "canWithdraw": False, "canDeposit": False, "brokered": False,
        "commissionRates": {"maker": views.d8(app.s.fee_rate), "taker": views.d8(app.s.fee_rate),
                            "buyer": "0.00000000", "seller": "0.00000000"},
        "requireSelfTradePrevention": False, "preventSor": False, "updateTime": app.engine.st.market_ms,
        "accountType": "SPOT", "balances": views.balances(app.engine.st), "permissions": ["SPOT"], "uid": 1,
    }


def my_trades(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/myTrades (optionally one order's)."""
    sym = _sym(app, p)
    return [views.trade(t, sym) for t in trade_history(app, p, SPOT)]


def page_len(app: PaperApp, asked: int) -> int:
    """How many rows one answer holds: the limit asked, at most PAPER_PAGE_MAX when that is set."""
    return min(asked, app.s.page_max) if app.s.page_max else asked


def trade_history(app: PaperApp, p: dict[str, str], account: str) -> list:
    """The executions a myTrades request selects, as Binance documents it: orderId (that order's), fromId (ids >=
    it), startTime / endTime (at most 24 h apart, -1127); limit default 500, max 1000; a request with fromId gets
    the first `limit` from there, any other the most recent `limit`."""
    n = page_len(app, P.limit(p, 500, 1000))
    oid, from_id = P.integer(p, "orderId"), P.integer(p, "fromId")
    start, end = P.time_range(p, DAY_MS)
    picked = [t for t in app.engine.st.trades if t.account == account and (oid is None or t.order_id == oid)
              and (from_id is None or t.id >= from_id) and (start is None or t.time >= start)
              and (end is None or t.time <= end)]
    return picked[:n] if from_id is not None or start is not None else picked[-n:]


# ---- lists and cancel-replace ------------------------------------------------------------------

def new_oco(app: PaperApp, p: dict[str, str]) -> Any:
    """POST /api/v3/orderList/oco."""
    sym = _sym(app, p)
    side, qty = P.required(p, "side"), P.dec(p, "quantity", required=True)
    above = P.new_order(p, "above", "aboveClientOrderId")
    below = P.new_order(p, "below", "belowClientOrderId")
    above.quantity = below.quantity = qty
    leg_client_ids(above, below)
    resp_type = resp_type_of(p, None)
    lst = app.cmd.place_oco(side, qty, above, below, P.client_id(p, "listClientOrderId"))
    for oid in lst.order_ids:
        app.mark_placed(oid)
    return views.order_list(lst, app.engine.st, sym, resp_type=resp_type)


def leg_client_ids(*legs: NewOrder) -> None:
    """Binance gives every leg sent without a client id its own random one (the engine's default id is
    derived from the next order id, which both legs of a list would share: "Duplicate order sent.")."""
    for leg in legs:
        if not leg.client_order_id:
            leg.client_order_id = secrets.token_urlsafe(16)[:22]


def query_list(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /api/v3/orderList."""
    lst = app.engine.find_list(*_ids(p, "orderListId", "origClientOrderId"))
    return views.order_list(lst, app.engine.st, app.s.symbol, reports=False)


def cancel_list(app: PaperApp, p: dict[str, str]) -> Any:
    """DELETE /api/v3/orderList."""
    sym = _sym(app, p)
    lst = app.cmd.cancel_list(*_ids(p, "orderListId", "listClientOrderId"))
    return views.order_list(lst, app.engine.st, sym)


def cancel_replace(app: PaperApp, p: dict[str, str]) -> Any:
    """POST /api/v3/order/cancelReplace with Binance's -2021 / -2022 failure shapes."""
    sym = _sym(app, p)
    mode = P.required(p, "cancelReplaceMode")
    oid, cid = _ids(p, "cancelOrderId", "cancelOrigClientOrderId")
    req = P.new_order(p)
    resp_type = resp_type_of(p, req.type)
    cancelled, new = app.cmd.cancel_replace(mode, oid, cid, req)
    ms = app.engine.st.market_ms
    cancel_part = _part(cancelled, lambda o: views.order_cancel(o, sym, f"cancel-{o.order_id}", ms))
    new_part = None if new is None else _part(new, lambda o: views.order_reply(o, sym, resp_type))
    if isinstance(new, POrder):
        app.mark_placed(new.order_id)
    data = {"cancelResult": "FAILURE" if isinstance(cancelled, ApiError) else "SUCCESS",
            "newOrderResult": "NOT_ATTEMPTED" if new is None else _result(new),
            "cancelResponse": cancel_part, "newOrderResponse": new_part}
    if data["cancelResult"] == "SUCCESS" and data["newOrderResult"] == "SUCCESS":
        return data
    if data["cancelResult"] == "FAILURE" and data["newOrderResult"] != "SUCCESS":
        raise ApiError(-2022, "Order cancel-replace failed.", http=400, data=data)
    raise ApiError(-2021, "Order cancel-replace partially failed.", http=409, data=data)


def _result(x: POrder | ApiError) -> str:
    return "FAILURE" if isinstance(x, ApiError) else "SUCCESS"


def _part(x: POrder | ApiError, view: Callable[[POrder], Any]) -> Any:
    return {"code": x.code, "msg": x.msg} if isinstance(x, ApiError) else view(x)


PUBLIC: dict[tuple[str, str], Handler] = {
    ("GET", "/api/v3/ping"): ping,
    ("GET", "/api/v3/time"): server_time,
}

SIGNED: dict[tuple[str, str], Handler] = {
    ("POST", "/api/v3/order"): new_order,
    ("GET", "/api/v3/order"): query_order,
    ("DELETE", "/api/v3/order"): cancel_order,
    ("GET", "/api/v3/openOrders"): open_orders,
    ("DELETE", "/api/v3/openOrders"): cancel_open_orders,
    ("GET", "/api/v3/allOrders"): all_orders,
    ("GET", "/api/v3/account"): account,
    ("GET", "/api/v3/myTrades"): my_trades,
    ("POST", "/api/v3/orderList/oco"): new_oco,
    ("GET", "/api/v3/orderList"): query_list,
    ("DELETE", "/api/v3/orderList"): cancel_list,
    ("POST", "/api/v3/order/cancelReplace"): cancel_replace,
}

PLACING = frozenset({"/api/v3/order", "/api/v3/orderList/oco", "/api/v3/order/cancelReplace"})
