"""Order-type rules: required parameters, stop triggers, marketability. Pure functions."""
from __future__ import annotations

from decimal import Decimal

from services.paper_exchange.model import LIMIT_TYPES, ORDER_TYPES, STOP_TYPES, ApiError, NewOrder, POrder

TIFS = frozenset({"GTC", "IOC", "FOK"})


def mandatory(name: str) -> ApiError:
    """-1102 for a missing parameter."""
    return ApiError(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def not_required(name: str) -> ApiError:
    """-1106 for a parameter the order type does not take."""
    return ApiError(-1106, f"Parameter '{name}' sent when not required.")


def check_shape(req: NewOrder) -> None:
    """Binance's per-type parameter rules (which are mandatory, which are forbidden)."""
    if req.side not in ("BUY", "SELL"):
        raise ApiError(-1117, "Invalid side.")
    if req.type not in ORDER_TYPES:
        raise ApiError(-1116, "Invalid orderType.")
    if req.type == "MARKET":
        if req.quantity is None and req.quote_qty is None:
            raise mandatory("quantity")
        if req.quantity is not None and req.quote_qty is not None:
            raise ApiError(-1106, "Parameter 'quoteOrderQty' sent when not required.")
    elif req.quantity is None:
        raise mandatory("quantity")
    elif req.quote_qty is not None:
        raise not_required("quoteOrderQty")
    _check_price_params(req)


def _check_price_params(req: NewOrder) -> None:
    needs_tif = req.type in ("LIMIT", "STOP_LOSS_LIMIT", "TAKE_PROFIT_LIMIT")
    if req.type in LIMIT_TYPES and req.price is None:
        raise mandatory("price")
    if req.type not in LIMIT_TYPES and req.price is not None:
        raise not_required("price")
    if req.type in STOP_TYPES and req.stop_price is None:
        raise mandatory("stopPrice")
    if req.type not in STOP_TYPES and req.stop_price is not None:
        raise not_required("stopPrice")
    if needs_tif and not req.time_in_force:
        raise mandatory("timeInForce")
    if not needs_tif and req.time_in_force:
        raise not_required("timeInForce")
    if req.time_in_force and req.time_in_force not in TIFS:
        raise ApiError(-1115, "Invalid timeInForce.")


def stop_triggered(side: str, order_type: str, stop: Decimal, last: Decimal) -> bool:
    """True when the last price has reached the stop.

    STOP_LOSS*: SELL when last <= stop, BUY when last >= stop. TAKE_PROFIT*: the mirror.
    """
    loss = order_type.startswith("STOP_LOSS")
    if side == "SELL":
        return last <= stop if loss else last >= stop
    return last >= stop if loss else last <= stop


def stop_reached(side: str, order_type: str, stop: Decimal, lo: Decimal, hi: Decimal) -> bool:
    """True when a move that traded every price in [lo, hi] reached the stop."""
    loss = order_type.startswith("STOP_LOSS")
    falling_trigger = (side == "SELL") == loss   # SELL stop-loss / BUY take-profit trigger on the way down
    return lo <= stop if falling_trigger else hi >= stop


def marketable(side: str, price: Decimal, bid: Decimal, ask: Decimal) -> bool:
    """A limit at `price` would take liquidity right now."""
    return price >= ask if side == "BUY" else price <= bid


def traded_through(o: POrder, lo: Decimal, hi: Decimal) -> bool:
    """A resting limit fills only when the price traded strictly through it."""
    return lo < o.price if o.side == "BUY" else hi > o.price
