"""Binance margin endpoints (/sapi/v1/margin/...): cross and isolated orders, loans, balances.

Margin orders match against the same market as spot orders; each wallet (CROSS, ISOLATED)
has its own balances and loans. Interest accrues hourly in market time when
PAPER_MARGIN_INTEREST_HOURLY is set; nothing is ever liquidated (paper).
"""
from __future__ import annotations

from typing import Any

from services.paper_exchange import params as P
from services.paper_exchange import repay_at_cancel, views
from services.paper_exchange.api import (
    DAY_MS, Handler, _ids, _new_order_reply, _sym, leg_client_ids, market_notional, order_history, resp_type_of,
    trade_history, transient_2013,
)
from services.paper_exchange.app import PaperApp
from services.paper_exchange.model import CROSS, ISOLATED, ApiError, NewOrder


def _account(p: dict[str, str]) -> str:
    flag = p.get("isIsolated", "FALSE").upper()
    if flag not in ("TRUE", "FALSE"):
        raise ApiError(-1100, "Illegal characters found in parameter 'isIsolated'; legal range is 'TRUE, FALSE'.")
    return ISOLATED if flag == "TRUE" else CROSS


def new_order(app: PaperApp, p: dict[str, str]) -> Any:
    """POST /sapi/v1/margin/order (sideEffectType: NO_SIDE_EFFECT, MARGIN_BUY, AUTO_REPAY, AUTO_BORROW_REPAY)."""
    sym = _sym(app, p)
    req = P.new_order(p)
    req.account, req.side_effect = _account(p), p.get("sideEffectType", "NO_SIDE_EFFECT")
    req.auto_repay_at_cancel = repay_at_cancel.parse(p.get("autoRepayAtCancel"))
    market_notional(app, req)
    resp_type = resp_type_of(p, req.type)
    o = app.cmd.place(req)
    app.mark_placed(o.order_id)
    return views.margin(o, _new_order_reply(o, sym, resp_type))


def query_order(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /sapi/v1/margin/order."""
    sym = _sym(app, p)
    oid, cid = _ids(p)
    o = app.engine.find(oid, cid, _account(p))
    transient_2013(app, "/sapi/v1/margin/order", o)
    return views.margin(o, views.order_query(o, sym))


def cancel_order(app: PaperApp, p: dict[str, str]) -> Any:
    """DELETE /sapi/v1/margin/order."""
    sym = _sym(app, p)
    oid, cid = _ids(p)
    o = app.cmd.cancel(oid, cid, _account(p))
    cancel_cid = P.client_id(p, "newClientOrderId") or f"cancel-{o.order_id}"
    return views.margin(o, views.order_cancel(o, sym, cancel_cid, app.engine.st.market_ms))


def open_orders(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /sapi/v1/margin/openOrders."""
    sym = _sym(app, p, required=False)
    return [views.margin(o, views.order_query(o, sym)) for o in app.engine.open_orders(_account(p))]


def all_orders(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /sapi/v1/margin/allOrders: one wallet's orders (limit: default 500, max 500; without orderId or times,
    only the last 24 h of market time, as Binance documents it)."""
    sym, account = _sym(app, p), _account(p)
    return [views.margin(o, views.order_query(o, sym))
            for o in order_history(app, p, account, max_limit=500, recent_ms=DAY_MS)]


def my_trades(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /sapi/v1/margin/myTrades."""
    sym, account = _sym(app, p), _account(p)
    return [{**views.trade(t, sym), "isIsolated": account == ISOLATED} for t in trade_history(app, p, account)]


def cross_account(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /sapi/v1/margin/account."""
    return views.cross_account(app.engine, app.s)


def isolated_account(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /sapi/v1/margin/isolated/account (our one symbol)."""
    wanted = p.get("symbols", app.s.symbol)
    if app.s.symbol not in wanted.split(","):
        raise ApiError(-1121, "Invalid symbol.")
    return views.isolated_account(app.engine, app.s)


def borrow_repay(app: PaperApp, p: dict[str, str]) -> Any:
    """POST /sapi/v1/margin/borrow-repay (type BORROW or REPAY)."""
    account = _account(p)
    if account == ISOLATED:
        _sym(app, p)
    kind, asset = P.required(p, "type"), P.required(p, "asset")
    amount = P.dec(p, "amount", required=True)
    if kind == "BORROW":
        return {"tranId": app.cmd.borrow(account, asset, amount)}
    if kind == "REPAY":
        return {"tranId": app.cmd.repay(account, asset, amount)}
    raise ApiError(-1100, "Illegal characters found in parameter 'type'; legal range is 'BORROW, REPAY'.")


def max_borrowable(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /sapi/v1/margin/maxBorrowable (isolatedSymbol selects the isolated wallet)."""
    iso = p.get("isolatedSymbol", "")
    if iso and iso != app.s.symbol:
        raise ApiError(-1121, "Invalid symbol.")
    amount = app.engine.max_borrowable(ISOLATED if iso else CROSS, P.required(p, "asset"))
    return {"amount": views.d8(amount), "borrowLimit": "1000000.00000000"}


def new_oco(app: PaperApp, p: dict[str, str]) -> Any:
    """POST /sapi/v1/margin/order/oco (the classic OCO parameters: price, stopPrice, stopLimitPrice)."""
    sym, account = _sym(app, p), _account(p)
    side, qty = P.required(p, "side"), P.dec(p, "quantity", required=True)
    effect = p.get("sideEffectType", "NO_SIDE_EFFECT")
    limit = NewOrder(side=side, type="LIMIT_MAKER", quantity=qty, price=P.dec(p, "price", required=True),
                     client_order_id=P.client_id(p, "limitClientOrderId"), account=account, side_effect=effect)
    stop = NewOrder(side=side, type="STOP_LOSS_LIMIT" if p.get("stopLimitPrice") else "STOP_LOSS", quantity=qty,
                    price=P.dec(p, "stopLimitPrice"), stop_price=P.dec(p, "stopPrice", required=True),
                    time_in_force=p.get("stopLimitTimeInForce", "") if p.get("stopLimitPrice") else "",
                    client_order_id=P.client_id(p, "stopClientOrderId"), account=account, side_effect=effect)
    above, below = (limit, stop) if side == "SELL" else (stop, limit)
    leg_client_ids(above, below)
    # The margin OCO docs name no default for newOrderRespType (the spot orderList/oco follows the per-type rule:
    # ACK): reports stay FULL unless one is asked for.
    resp_type = resp_type_of(p, "LIMIT")
    lst = app.cmd.place_oco(side, qty, above, below, P.client_id(p, "listClientOrderId"))
    for oid in lst.order_ids:
        app.mark_placed(oid)
    return {**views.order_list(lst, app.engine.st, sym, resp_type=resp_type), "isIsolated": account == ISOLATED}


def query_list(app: PaperApp, p: dict[str, str]) -> Any:
    """GET /sapi/v1/margin/orderList."""
    account = _account(p)
    lst = app.engine.find_list(*_ids(p, "orderListId", "origClientOrderId"), account)
    return {**views.order_list(lst, app.engine.st, app.s.symbol, reports=False), "isIsolated": account == ISOLATED}


def cancel_list(app: PaperApp, p: dict[str, str]) -> Any:
    """DELETE /sapi/v1/margin/orderList."""
    sym, account = _sym(app, p), _account(p)
    lst = app.cmd.cancel_list(*_ids(p, "orderListId", "listClientOrderId"), account)
    return {**views.order_list(lst, app.engine.st, sym), "isIsolated": account == ISOLATED}


SIGNED: dict[tuple[str, str], Handler] = {
    ("POST", "/sapi/v1/margin/order/oco"): new_oco,
    ("GET", "/sapi/v1/margin/orderList"): query_list,
    ("DELETE", "/sapi/v1/margin/orderList"): cancel_list,
    ("POST", "/sapi/v1/margin/order"): new_order,
    ("GET", "/sapi/v1/margin/order"): query_order,
    ("DELETE", "/sapi/v1/margin/order"): cancel_order,
    ("GET", "/sapi/v1/margin/openOrders"): open_orders,
    ("GET", "/sapi/v1/margin/allOrders"): all_orders,
    ("GET", "/sapi/v1/margin/myTrades"): my_trades,
    ("GET", "/sapi/v1/margin/account"): cross_account,
    ("GET", "/sapi/v1/margin/isolated/account"): isolated_account,
    ("POST", "/sapi/v1/margin/borrow-repay"): borrow_repay,
    ("GET", "/sapi/v1/margin/maxBorrowable"): max_borrowable,
}
