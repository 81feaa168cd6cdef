"""What every part of the exit manager shares: its collaborators, the state helpers (the position read and
written in one Redis transaction) and `TickAborted`."""
from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from typing import TYPE_CHECKING

from services.exit_manager.order_feed import ExitFeed
from shared.adapters.binance_rest import BinanceClient, BinanceError, NotFound, RateLimited, UnknownOutcome
from shared.config import Config
from shared.domain.orders import Order
from shared.domain.position import EXIT_PHASES, Leg, Position, State
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime

if TYPE_CHECKING:
    from services.exit_manager.manual_close import ManualCloseWatch


BOOK_TICKER_WEIGHT = 2


class TickAborted(Exception):
    """The exchange could not be read this tick; act on nothing, try again next tick."""


class ExitBase:
    """The exit manager's collaborators and the state helpers every part of it uses."""

    rt: Runtime
    cfg: Config
    client: BinanceClient
    f: SymbolFilters
    fee_rate: Decimal
    feed: ExitFeed
    manual: ManualCloseWatch
    _fresh: set[str]
    _senders: ThreadPoolExecutor
    _missing_reads: dict[tuple[str, str, int], int]
    _flatten_retry_at: dict[str, float]

    def _pos(self) -> Position | None:
        p = self.rt.store.load().position
        return p if p is not None and p.status in EXIT_PHASES else None

    def _mutate(self, trade_key: str, fn: Callable[[Position], None]) -> Position | None:
        """Apply `fn` to the position if it is still this trade in the exit phase; return it."""
        def tx(st: State):
            p = st.position
            if p is None or p.trade_key != trade_key or p.status not in EXIT_PHASES:
                return None
            fn(p)
            return st, []
        p = self.rt.store.update(tx).position
        return p if p is not None and p.trade_key == trade_key and p.status in EXIT_PHASES else None

    def _mutate_leg(self, trade_key: str, name: str, fn: Callable[[Position, Leg], None]) -> Position | None:
        def on_pos(p: Position) -> None:
            fn(p, next(leg for leg in p.legs if leg.name == name))
        return self._mutate(trade_key, on_pos)

    def _query(self, cid: str, poll: str = "") -> Order | None:
        """GET one order by client id. `poll`: the REST read it is part of (counted as polling), else an action."""
        if poll:
            self.feed.poll_weight += self.feed.query_weight
            self.feed.budget.charge(self.feed.query_weight, time.time())
        else:
            self.feed.charge_action(self.feed.query_weight)
        try:
            o = self.client.get_order(self.cfg.SYMBOL, client_order_id=cid)
        except NotFound:
            return None
        except (UnknownOutcome, RateLimited) as e:
            raise TickAborted(str(e)) from None
        self.feed.note(o)
        return o

    def _executable(self, side: str) -> Decimal | None:
        """The price a closing market order would get (bid for a long, ask for a short)."""
        book = self._book()
        return None if book is None else (book[0] if side == "long" else book[1])

    def _book(self) -> tuple[Decimal, Decimal] | None:
        """SYMBOL's (bid, ask), None when the exchange cannot say."""
        self.feed.charge_action(BOOK_TICKER_WEIGHT)
        try:
            return self.client.book_ticker(self.cfg.SYMBOL)
        except BinanceError as e:
            self.rt.log.warning("book_ticker_failed", error=str(e))
            return None
