"""Where the watchdog's view of the outside comes from: the exchange (through a small provider protocol) and
the aggregated.csv feed."""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Protocol

import msgspec

from shared.domain.invariants import OpenOrder


class SnapshotProvider(Protocol):
    """Read-only exchange access. Both methods raise on failure (the watchdog reports it as unavailable)."""

    def open_orders(self) -> list[OpenOrder]:
        """Open orders of the configured symbol."""

    def margin_debts(self) -> dict[str, Decimal]:
        """Margin debt (borrowed + interest) per asset of the configured symbol."""

    def free_base(self) -> Decimal:
        """Free (not locked by an order) balance of the symbol's base asset."""


def to_open_order(o: Any) -> OpenOrder:
    """An OpenOrder from a `shared.domain.orders.Order` (or anything with the same attribute names)."""
    return OpenOrder(client_order_id=o.client_order_id, type=o.type, side=o.side, qty=Decimal(o.orig_qty),
                     price=Decimal(o.price), stop_price=Decimal(o.stop_price), status=o.status)


class BinanceSnapshotProvider:
    """A SnapshotProvider over `shared.adapters.binance_rest.BinanceClient`. Never places or cancels anything."""

    def __init__(self, client: Any, symbol: str, assets: tuple[str, ...], margin: str | None) -> None:
        self.client, self.symbol, self.assets, self.margin = client, symbol, assets, margin

    def open_orders(self) -> list[OpenOrder]:
        return [to_open_order(o) for o in self.client.open_orders(self.symbol)]

    def free_base(self) -> Decimal:
        base = self.assets[0]
        if self.margin:
            return self.client.margin_account()[base].free
        return self.client.account().get(base, (Decimal(0), Decimal(0)))[0]

    def margin_debts(self) -> dict[str, Decimal]:
        if hasattr(self.client, "margin_debts"):
            return {a: Decimal(d) for a, d in self.client.margin_debts(self.symbol).items()}
        # The client has no margin-account call yet: use its signed transport (read-only GET endpoints).
        if self.margin == "isolated":
            body = msgspec.json.decode(self.client._request(
                "GET", "/sapi/v1/margin/isolated/account", {"symbols": self.symbol}, signed=True))
            out: dict[str, Decimal] = {}
            for pair in body.get("assets", []):
                if pair.get("symbol") != self.symbol:
                    continue
                for side in ("baseAsset", "quoteAsset"):
                    a = pair.get(side) or {}
                    out[a["asset"]] = Decimal(a.get("borrowed", "0")) + Decimal(a.get("interest", "0"))
            return out
        body = msgspec.json.decode(self.client._request("GET", "/sapi/v1/margin/account", {}, signed=True))
        return {a["asset"]: Decimal(a.get("borrowed", "0")) + Decimal(a.get("interest", "0"))
                for a in body.get("userAssets", []) if not self.assets or a.get("asset") in self.assets}


class FeedStatus(msgspec.Struct, frozen=True):
    configured: bool
    readable: bool
    last_bar_ts: float | None
    error: str = ""


def read_feed_status(path: str) -> FeedStatus:
    """Is the trailing feed configured, readable, and what is its last bar's time."""
    if not path:
        return FeedStatus(False, False, None, "AGG_CSV is empty")
    from shared.adapters.agg_feed import FeedUnavailable, read_last_bars
    from shared.domain.bars import BadHeader
    try:
        read = read_last_bars(path, 1)
    except (FeedUnavailable, BadHeader, OSError) as e:
        return FeedStatus(True, False, None, f"{e.__class__.__name__}: {e}"[:300])
    return FeedStatus(True, True, float(read.bars[-1].ts) if read.bars else None)
