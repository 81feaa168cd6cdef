"""The exchange calls every part of the exit manager shares: reading one order, the book, the trade's open
orders, and cancelling; each charges its weight to the feed's budget. `TickAborted` when the exchange cannot say."""
from __future__ import annotations

import time
from decimal import Decimal

from services.exit_manager.order_feed import ExitFeed
from shared.adapters.binance_rest import BinanceClient, BinanceError, NotFound, RateLimited, UnknownOutcome
from shared.domain.exit_rules import LegIds
from shared.domain.order_ids import trade_key_of
from shared.domain.orders import Order
from shared.domain.position import Position
from shared.runtime import Runtime

BOOK_TICKER_WEIGHT = 2


class TickAborted(Exception):
    """The exchange could not be read this tick; act on nothing, try again next tick."""


class ExitExchange:
    """Reads and cancels on the exchange for the exit manager's parts."""

    def __init__(self, rt: Runtime, client: BinanceClient, feed: ExitFeed) -> None:
        self.rt, self.cfg, self.client, self.feed = rt, rt.cfg, client, feed

    def query(self, cid: str, poll: str = "") -> Order | None:
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

    def executable(self, side: str) -> Decimal | None:
        """The price a closing market order would get (bid for a long, ask for a short)."""
        book = self.book()
        return None if book is None else (book[0] if side == "long" else book[1])

    def book(self) -> tuple[Decimal, Decimal] | None:
        """SYMBOL's (bid, ask), None when the exchange cannot say."""
        self.feed.charge_action(BOOK_TICKER_WEIGHT)
        try:
            return self.client.book_ticker(self.cfg.SYMBOL)
        except BinanceError as e:
            self.rt.log.warning("book_ticker_failed", error=str(e))
            return None

    def trade_open_orders(self, trade_key: str) -> list[Order]:
        """The exchange's open orders of the trade."""
        self.feed.charge_action(self.feed.open_orders_weight)
        try:
            return [o for o in self.client.open_orders(self.cfg.SYMBOL) if trade_key_of(o.client_order_id) == trade_key]
        except (UnknownOutcome, RateLimited) as e:
            raise TickAborted(str(e)) from None

    def cancel_all(self, pos: Position) -> None:
        """Cancel every open order of the trade; TickAborted unless none is left open."""
        for o in self.trade_open_orders(pos.trade_key):
            try:
                if o.order_list_id != -1:
                    self.client.cancel_order_list(self.cfg.SYMBOL, order_list_id=o.order_list_id)
                else:
                    self.client.cancel_order(self.cfg.SYMBOL, client_order_id=o.client_order_id)
                self.rt.event("order_cancelled", pos.trade_key, client_id=o.client_order_id)
            except NotFound:
                continue
            except (UnknownOutcome, RateLimited) as e:
                raise TickAborted(str(e)) from None
        if self.trade_open_orders(pos.trade_key):
            raise TickAborted("orders of the trade still open after cancel")

    def cancel_old(self, old: LegIds) -> None:
        """Cancel a leg attempt's orders (its OCO, or its single stop); gone already is fine."""
        self.feed.expect_update(old.tp_id, old.stop_id)
        try:
            if old.list_id:
                self.client.cancel_order_list(self.cfg.SYMBOL, list_client_order_id=old.list_id)
            else:
                self.client.cancel_order(self.cfg.SYMBOL, client_order_id=old.stop_id)
        except NotFound:
            pass  # already filled, expired or cancelled: the query that follows says which
        except (UnknownOutcome, RateLimited) as e:
            raise TickAborted(str(e)) from None
