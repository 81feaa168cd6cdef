"""Sending the entry order of the current attempt, exactly once: the client id is fixed in the state before
the request, and any outcome that is not a clear answer leaves the position PENDING for the tracker, which
queries that id (and only re-sends after the exchange has said, past a grace period, that it does not exist)."""
from __future__ import annotations

import time

from services.position_engine.margin import MarginBorrower
from services.position_engine.order_feed import OrderFeed
from services.position_engine.writer import PositionWriter
from shared.adapters.binance_rest import (
    BinanceClient,
    BinanceError,
    RateLimited,
    Rejected,
    UnknownOutcome,
    Unreachable,
)
from shared.domain.entry_rules import entry_order_args
from shared.domain.orders import Order
from shared.domain.position import Position
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime


class EntrySender:
    """POST the entry order (after the manual margin borrow, when configured)."""

    def __init__(self, rt: Runtime, client: BinanceClient, f: SymbolFilters, writer: PositionWriter,
                 feed: OrderFeed | None = None) -> None:
        self.rt, self.cfg, self.client, self.f, self.writer = rt, rt.cfg, client, f, writer
        self.margin = MarginBorrower(rt, client, f, writer)
        self.feed = feed

    def _learned(self, trade_key: str) -> dict:
        """How the entry was followed: REST order queries this process made for it (the rest came from the
        order responses and the `orders` stream)."""
        return {} if self.feed is None else {"rest_queries": self.feed.rest_queries.get(trade_key, 0)}

    def send(self, pos: Position) -> Order | None:
        """Send the entry; the exchange's order, or None when the outcome is not known yet (or it was aborted)."""
        wait = self.client.order_budget.entry_wait() if self.client.order_budget is not None else 0.0
        if wait > 0:  # the IP's order count is near Binance's limit: what is left is the exits' (stops never wait)
            self.rt.event("entry_held_order_count", pos.trade_key, level="warning", wait_s=round(wait, 1),
                          client_id=pos.entry_client_id)
            return None
        ready, refused = self.margin.ensure_borrowed(pos)
        if refused:
            self.abort(pos, refused)
        if not ready:
            return None
        args = entry_order_args(pos)
        if self.client.margin:
            args["side_effect_type"] = self._side_effect()
            if self.cfg.MARGIN_BORROW_MODE == "auto":   # the original sends it, TRUE or FALSE, on every auto order
                args["auto_repay_at_cancel"] = self.cfg.MARGIN_AUTO_REPAY_AT_CANCEL
        wall, t0 = time.time(), time.perf_counter()
        try:
            o = self.client.place_order(self.cfg.SYMBOL, client_order_id=pos.entry_client_id, **args)
        except Rejected as e:
            if "duplicate" in e.msg.lower():  # our id is already on the exchange: the tracker's query adopts it
                self.rt.event("entry_duplicate", pos.trade_key, level="warning", client_id=pos.entry_client_id)
                return None
            self.rt.event("entry_rejected", pos.trade_key, level="warning", code=e.code, error=e.msg)
            self.abort(pos, f"entry_rejected: {e.code} {e.msg}")
            return None
        except (UnknownOutcome, RateLimited, Unreachable, BinanceError, OSError) as e:
            kind = "entry_unknown_outcome" if isinstance(e, UnknownOutcome) else "entry_send_failed"
            self.rt.event(kind, pos.trade_key, level="warning", error=str(e), client_id=pos.entry_client_id)
            return None  # the tracker resolves it by querying the client id
        self.rt.event("entry_sent", pos.trade_key, client_id=pos.entry_client_id, order_id=o.order_id, status=o.status,
                      ms=round((time.perf_counter() - t0) * 1000, 2), wall_sent=wall,
                      **{k: str(v) for k, v in args.items()})
        return o

    def _side_effect(self) -> str:
        """MARGIN_BORROW_MODE=auto lets the exchange borrow and repay (MARGIN_SIDE_EFFECT); manual borrowed first."""
        return self.cfg.MARGIN_SIDE_EFFECT if self.cfg.MARGIN_BORROW_MODE == "auto" else "NO_SIDE_EFFECT"

    def hand_over(self, trade_key: str) -> None:
        """The entry is done (filled, or partly filled and over): OPEN_FILLED + ENTRY_FILLED, and tell the operator."""
        p = self.writer.hand_over(trade_key)
        if p is not None:
            self.rt.event("entry_filled", p.trade_key, qty=p.filled_qty, avg_entry=p.avg_entry, side=p.side,
                          **self._learned(p.trade_key))
            self.rt.notify("opened", f"{p.side} {p.filled_qty} {p.symbol} @ {p.avg_entry}", "INFO", p.trade_key)

    def abort(self, pos: Position, reason: str) -> None:
        """Give the entry up: free the slot, repay a manual borrow that no position needs any more, tell the operator.
        Coins already bought (a partial fill before a failed Plan B) are never dropped: they are handed over."""
        cur = self.rt.store.load().position
        if cur is not None and cur.trade_key == pos.trade_key and cur.filled_qty >= self.f.min_qty:
            self.rt.event("entry_partial", pos.trade_key, filled=cur.filled_qty, planned=cur.qty, reason=reason)
            self.hand_over(pos.trade_key)
            return
        gone = self.writer.abort(pos.trade_key, reason)
        if gone is None:
            return
        self.rt.event("entry_aborted", pos.trade_key, level="warning", reason=reason, **self._learned(pos.trade_key))
        self.rt.notify("entry_aborted", reason, "WARN", pos.trade_key)
        if gone.margin_borrowed > 0 and gone.filled_qty == 0:
            self.margin.repay(gone)
