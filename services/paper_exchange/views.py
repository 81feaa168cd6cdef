"""Binance JSON shapes of orders, lists, trades and balances (Decimals as plain 8-decimal strings)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.paper_exchange.model import EngineState, PList, POrder, PTrade

_Q8 = Decimal("0.00000001")


def d8(v: Decimal) -> str:
    """Binance's number format: a string with at least 8 decimals, never an exponent."""
    q = v.quantize(_Q8)
    # Keep every digit when more than 8 decimals are significant (never round money silently).
    return format(q if q == v else v.normalize(), "f")


def _base(o: POrder, symbol: str) -> dict[str, Any]:
    return {
        "symbol": symbol, "orderId": o.order_id, "orderListId": o.order_list_id, "clientOrderId": o.client_order_id,
        "price": d8(o.price), "origQty": d8(o.orig_qty), "executedQty": d8(o.executed_qty),
        "origQuoteOrderQty": d8(o.orig_quote_qty), "cummulativeQuoteQty": d8(o.cum_quote), "status": o.status,
        "timeInForce": o.time_in_force or "GTC", "type": o.type, "side": o.side,
        **({"stopPrice": d8(o.stop_price)} if o.stop_price else {}),
        "selfTradePreventionMode": "EXPIRE_MAKER",
    }


def order_full(o: POrder, symbol: str, fills_from: int = 0) -> dict[str, Any]:
    """newOrderRespType=FULL: the order plus the fills of this request."""
    out = _base(o, symbol)
    out["transactTime"] = o.time
    out["workingTime"] = o.working_time
    out["fills"] = [fill(f) for f in o.fills[fills_from:]]
    return out


def fill(f: Any) -> dict[str, Any]:
    """One FULL-response fill."""
    return {"price": d8(f.price), "qty": d8(f.qty), "commission": d8(f.commission),
            "commissionAsset": f.commission_asset, "tradeId": f.trade_id}


def order_query(o: POrder, symbol: str) -> dict[str, Any]:
    """GET /api/v3/order shape."""
    out = _base(o, symbol)
    out.update({"stopPrice": d8(o.stop_price), "icebergQty": d8(Decimal(0)), "time": o.time,
                "updateTime": o.update_time, "isWorking": o.is_working, "workingTime": o.working_time})
    return out


def order_cancel(o: POrder, symbol: str, cancel_client_id: str, transact_ms: int) -> dict[str, Any]:
    """DELETE /api/v3/order shape: clientOrderId is the cancel's id, origClientOrderId the order's."""
    out = _base(o, symbol)
    out.update({"origClientOrderId": o.client_order_id, "clientOrderId": cancel_client_id,
                "transactTime": transact_ms})
    return out


def order_admin(o: POrder, symbol: str) -> dict[str, Any]:
    """The exchange's whole truth about one order, for tests and operators."""
    out = order_query(o, symbol)
    out["fills"] = [fill(f) for f in o.fills]
    return out


def order_list(lst: PList, st: EngineState, symbol: str, reports: bool = True) -> dict[str, Any]:
    """An order list with its orders (and their reports)."""
    legs = [st.orders[i] for i in lst.order_ids]
    out: dict[str, Any] = {
        "orderListId": lst.order_list_id, "contingencyType": lst.contingency_type,
        "listStatusType": lst.list_status_type, "listOrderStatus": lst.list_order_status,
        "listClientOrderId": lst.list_client_order_id, "transactionTime": lst.transaction_time, "symbol": symbol,
        "orders": [{"symbol": symbol, "orderId": o.order_id, "clientOrderId": o.client_order_id} for o in legs],
    }
    if reports:
        out["orderReports"] = [order_full(o, symbol) for o in legs]
    return out


def trade(t: PTrade, symbol: str) -> dict[str, Any]:
    """GET /api/v3/myTrades entry."""
    return {"symbol": symbol, "id": t.id, "orderId": t.order_id, "orderListId": t.order_list_id,
            "price": d8(t.price), "qty": d8(t.qty), "quoteQty": d8(t.quote_qty), "commission": d8(t.commission),
            "commissionAsset": t.commission_asset, "time": t.time, "isBuyer": t.is_buyer, "isMaker": t.is_maker,
            "isBestMatch": True}


def balances(st: EngineState) -> list[dict[str, str]]:
    """Account balances, sorted by asset."""
    return [{"asset": a, "free": d8(b.free), "locked": d8(b.locked)} for a, b in sorted(st.balances.items())]
