"""What every part of the exit manager shares, built once: the runtime, the exchange client, the symbol's filters,
the exits' commission rate, the `orders` feed, the state store and the exchange calls. A part takes these as one
`Parts` and names only the other parts it really calls."""
from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from services.exit_manager.exchange import ExitExchange
from services.exit_manager.order_feed import ExitFeed
from services.exit_manager.store import PositionStore
from shared.adapters.binance_rest import BinanceClient
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime


@dataclass(frozen=True)
class Parts:
    """The shared inputs and outputs of the exit manager's parts."""
    rt: Runtime
    client: BinanceClient
    f: SymbolFilters
    fee_rate: Decimal       # commission rate of the exits (a short's legs buy enough to cover it), read once at start
    feed: ExitFeed
    store: PositionStore
    exchange: ExitExchange

    @classmethod
    def build(cls, rt: Runtime, client: BinanceClient, f: SymbolFilters, fee_rate: Decimal) -> "Parts":
        """The feed, the store and the exchange calls for `client`."""
        feed = ExitFeed(rt, margin=bool(client.margin))
        return cls(rt, client, f, fee_rate, feed, PositionStore(rt), ExitExchange(rt, client, feed))


class Part:
    """A part of the exit manager: the shared `Parts` as attributes."""

    def __init__(self, p: Parts) -> None:
        self.rt, self.cfg, self.client, self.f, self.fee_rate = p.rt, p.rt.cfg, p.client, p.f, p.fee_rate
        self.feed, self.store, self.exchange = p.feed, p.store, p.exchange
