"""Finding the account's own trades that are not the executor's: what a person sold by hand."""
from __future__ import annotations

from decimal import Decimal

from shared.adapters.binance_rest import BinanceClient, BinanceError, NotFound
from shared.domain.exit_rules import exit_side
from shared.domain.order_ids import trade_key_of
from shared.domain.position import Position


def foreign_fills(client: BinanceClient, symbol: str, pos: Position, cap: Decimal) -> tuple[Decimal, Decimal]:
    """(qty, quote) of the account's closing-side trades since the position filled whose orders are not ours,
    newest first, up to `cap`. (0, 0) when the exchange cannot say."""
    try:
        trades = client.my_trades(symbol)
    except BinanceError:
        return Decimal(0), Decimal(0)
    closing_buy = exit_side(pos.side) == "BUY"
    since_ms = int(pos.filled_at * 1000)
    owners: dict[int, bool] = {}
    qty = quote = Decimal(0)
    for t in sorted(trades, key=lambda t: t.time, reverse=True):
        if t.is_buyer != closing_buy or t.time < since_ms or qty >= cap:
            continue
        if t.order_id not in owners:
            owners[t.order_id] = _is_ours(client, symbol, t.order_id, pos.trade_key)
        if not owners[t.order_id]:
            take = min(t.qty, cap - qty)
            qty += take
            quote += t.quote_qty * take / t.qty
    return qty, quote


def _is_ours(client: BinanceClient, symbol: str, order_id: int, trade_key: str) -> bool:
    try:
        o = client.get_order(symbol, order_id=order_id)
    except NotFound:
        return False
    except BinanceError:
        return True  # unknown: do not book it as somebody else's
    return trade_key_of(o.client_order_id) == trade_key


def base_net(client: BinanceClient, symbol: str, asset: str) -> Decimal:
    """The margin wallet's net of `asset` (free + locked - borrowed - interest): cross, or the isolated pair's."""
    b = client.margin_wallet(symbol).get(asset)
    return b.free + b.locked - b.borrowed - b.interest if b is not None else Decimal(0)
