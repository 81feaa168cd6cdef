"""Binance JSON shapes of orders, lists, trades and balances (Decimals as plain 8-decimal strings)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.paper_exchange import ledger
from services.paper_exchange.model import EngineState, PList, POrder, PTrade

_Q8 = Decimal("0.00000001")


def d8(v: Decimal) -> str:
    """Binance's number format: a string with at least 8 decimals, never an exponent."""
    q = v.quantize(_Q8)
    # Keep every digit when more than 8 decimals are significant (never round money silently).
    return format(q if q == v else v.normalize(), "f")


def json_number(v: Decimal) -> int | float:
    """A Decimal as a JSON number (an integer when it is one)."""
    return int(v) if v == v.to_integral_value() else float(v)


def _base(o: POrder, symbol: str) -> dict[str, Any]:
    return {
        "symbol": symbol, "orderId": o.order_id, "orderListId": o.order_list_id, "clientOrderId": o.client_order_id,
        "price": d8(o.price), "origQty": d8(o.orig_qty), "executedQty": d8(o.executed_qty),
        "origQuoteOrderQty": d8(o.orig_quote_qty), "cummulativeQuoteQty": d8(o.cum_quote), "status": o.status,
        "timeInForce": o.time_in_force or "GTC", "type": o.type, "side": o.side,
        **({"stopPrice": d8(o.stop_price)} if o.stop_price else {}),
        "selfTradePreventionMode": o.stp_mode,
        **expiry_fields(o),
    }


def expiry_fields(o: POrder) -> dict[str, Any]:
    """Binance's conditional fields of an order that expired: preventedMatchId / preventedQuantity after
    self-trade prevention (EXPIRED_IN_MATCH, faqs/stp_faq.md), expiryReason (CHANGELOG 2026-03-09 / 2026-05-06:
    order responses and queries carry it only for expired orders)."""
    out: dict[str, Any] = {}
    if o.prevented_match_id != -1:
        out["preventedMatchId"] = o.prevented_match_id
        out["preventedQuantity"] = d8(o.prevented_qty)
    if o.expiry_reason and o.status in ("EXPIRED", "EXPIRED_IN_MATCH"):
        out["expiryReason"] = o.expiry_reason
    return out


def order_full(o: POrder, symbol: str, fills_from: int = 0) -> dict[str, Any]:
    """newOrderRespType=FULL: the order plus the fills of this request."""
    out = _base(o, symbol)
    out["transactTime"] = o.time
    out["workingTime"] = o.working_time
    out["fills"] = [fill(f) for f in o.fills[fills_from:]]
    return out


_ACK = ("symbol", "orderId", "orderListId", "clientOrderId", "transactTime")


def order_reply(o: POrder, symbol: str, resp_type: str) -> dict[str, Any]:
    """A new order's reply as `newOrderRespType` asks: ACK (ids and time), RESULT (no fills) or FULL."""
    full = order_full(o, symbol)
    if resp_type == "ACK":
        return {k: full[k] for k in _ACK}
    if resp_type == "RESULT":
        full.pop("fills")
    return full


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
    out["account"] = o.account
    if o.account != "SPOT":
        margin(o, out)
        out["sideEffectType"] = o.side_effect
    return out


def order_list(lst: PList, st: EngineState, symbol: str, reports: bool = True,
               resp_type: str = "FULL") -> dict[str, Any]:
    """An order list with its orders (and their reports, shaped by `resp_type` as a new order's reply)."""
    legs = [st.orders[i] for i in lst.order_ids]
    out: dict[str, Any] = {
        "orderListId": lst.order_list_id, "contingencyType": lst.contingency_type,
        "listStatusType": lst.list_status_type, "listOrderStatus": lst.list_order_status,
        "listClientOrderId": lst.list_client_order_id, "transactionTime": lst.transaction_time, "symbol": symbol,
        "orders": [{"symbol": symbol, "orderId": o.order_id, "clientOrderId": o.client_order_id} for o in legs],
    }
    if reports:
        out["orderReports"] = [order_reply(o, symbol, resp_type) for o in legs]
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


def margin(o: POrder, out: dict[str, Any]) -> dict[str, Any]:
    """A spot order view plus the margin fields."""
    out["isIsolated"] = o.account == "ISOLATED"
    if o.borrowed_amount:
        # A JSON number, as Binance documents it (`"marginBuyBorrowAmount": 5`; the official SDK's model
        # declares an integer): unlike every other amount, not a decimal string.
        out["marginBuyBorrowAmount"] = json_number(o.borrowed_amount)
        out["marginBuyBorrowAsset"] = o.borrowed_asset
    return out


def _margin_asset(asset: str, b: Any) -> dict[str, Any]:
    net = b.free + b.locked - b.borrowed - b.interest
    return {"asset": asset, "free": d8(b.free), "locked": d8(b.locked), "borrowed": d8(b.borrowed),
            "interest": d8(b.interest), "netAsset": d8(net)}


def _level(net: Decimal, liab: Decimal) -> str:
    # marginLevel = total assets / liabilities (Binance shows 999 when nothing is borrowed).
    return d8((net + liab) / liab) if liab > 0 else "999.00000000"


def _in_btc(v: Decimal, s: Any, price: Decimal) -> str:
    """Binance reports account totals in BTC: quote-valued totals divided by the price when the base is BTC
    (for another base asset the totals stay in quote terms)."""
    return d8((v / price).quantize(_Q8)) if s.base_asset == "BTC" and price > 0 else d8(v)


def cross_account(engine: Any, s: Any) -> dict[str, Any]:
    """GET /sapi/v1/margin/account: Binance's fields (totals in BTC), plus the paper's quote-valued totals
    (totalNetAsset, totalLiability, totalAsset)."""
    last = engine.st.last
    net, liab = ledger.net_value(engine.st, "CROSS", s.base_asset, last)
    w = ledger.wallet(engine.st, "CROSS")
    return {"created": True, "borrowEnabled": True, "tradeEnabled": True, "transferEnabled": True,
            "transferInEnabled": True, "transferOutEnabled": True, "accountType": "MARGIN_1",
            "marginLevel": _level(net, liab), "collateralMarginLevel": _level(net, liab),
            "totalAssetOfBtc": _in_btc(net + liab, s, last), "totalLiabilityOfBtc": _in_btc(liab, s, last),
            "totalNetAssetOfBtc": _in_btc(net, s, last), "totalCollateralValueInUSDT": d8(net + liab),
            "totalNetAsset": d8(net), "totalLiability": d8(liab), "totalAsset": d8(net + liab),
            "userAssets": [_margin_asset(a, b) for a, b in sorted(w.items())]}


def isolated_account(engine: Any, s: Any) -> dict[str, Any]:
    """GET /sapi/v1/margin/isolated/account for the one symbol (Binance's fields, totals in BTC)."""
    last = engine.st.last
    net, liab = ledger.net_value(engine.st, "ISOLATED", s.base_asset, last)

    def side(a: str) -> dict[str, Any]:
        b = ledger.balance(engine.st, a, "ISOLATED")
        row = _margin_asset(a, b)
        value = Decimal(1) if a == s.base_asset else Decimal(1) / last if last > 0 else Decimal(0)
        total = b.free + b.locked
        row.update({"borrowEnabled": True, "repayEnabled": True, "totalAsset": d8(total),
                    "netAssetOfBtc": d8(((total - b.borrowed - b.interest) * value).quantize(_Q8))
                    if s.base_asset == "BTC" else row["netAsset"]})
        return row

    level = _level(net, liab)
    return {"assets": [{"symbol": s.symbol, "baseAsset": side(s.base_asset), "quoteAsset": side(s.quote_asset),
                        "isolatedCreated": True, "enabled": True, "tradeEnabled": True,
                        "marginLevel": level, "marginLevelStatus": "EXCESSIVE", "marginRatio": "3.00000000",
                        "indexPrice": d8(last), "liquidatePrice": "0.00000000", "liquidateRate": "0.00000000"}],
            "totalAssetOfBtc": _in_btc(net + liab, s, last), "totalLiabilityOfBtc": _in_btc(liab, s, last),
            "totalNetAssetOfBtc": _in_btc(net, s, last),
            "totalNetAsset": d8(net), "totalLiability": d8(liab)}
