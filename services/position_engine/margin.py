"""MARGIN_BORROW_MODE=manual: borrow what the entry lacks before it is sent (quote for a long, base for a short),
once per trade, recorded in the position with the trade key (intent before the call, transaction id after) so
that a crash in between is resolved from the account's debt, and the exit manager can repay after the close."""
from __future__ import annotations

from decimal import Decimal

from services.position_engine.writer import PositionWriter
from shared.adapters.binance_rest import BinanceClient, BinanceError, Rejected
from shared.domain import transitions as tr
from shared.domain.entry_rules import borrow_need
from shared.domain.position import Position
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime


class MarginBorrower:
    """The manual borrow before an entry, and its repayment when the entry is given up."""

    def __init__(self, rt: Runtime, client: BinanceClient, f: SymbolFilters, writer: PositionWriter) -> None:
        self.rt, self.cfg, self.client, self.f, self.writer = rt, rt.cfg, client, f, writer

    def ensure_borrowed(self, pos: Position) -> tuple[bool, str]:
        """(ready to send, reason to abort or ""). Borrows at most once per trade."""
        if not self.client.margin or self.cfg.MARGIN_BORROW_MODE != "manual" or pos.margin_borrow_tran_id != 0:
            return True, ""
        try:
            if pos.margin_borrow_asset:  # a borrow was under way when we stopped: did it happen?
                return self._confirm_borrow(pos), ""
            return self._borrow(pos), ""
        except BinanceError as e:
            self.rt.event("margin_borrow_failed", pos.trade_key, level="error", error=str(e))
            self.rt.notify("entry_error", f"margin borrow failed: {e}", "ERROR", pos.trade_key, cause="borrow")
            return False, (f"margin_borrow_rejected: {e.code} {e.msg}" if isinstance(e, Rejected) else "")

    def _symbol(self) -> str | None:
        return self.cfg.SYMBOL if self.client.margin == "isolated" else None


    def _borrow(self, pos: Position) -> bool:
        side_asset = self.f.quote_asset if pos.side == "long" else self.f.base_asset
        bal = self.client.margin_wallet(self.cfg.SYMBOL).get(side_asset)
        need = borrow_need(pos.side, pos.qty, pos.entry_price, bal.free if bal else Decimal(0), self.f,
                           self.cfg.MARGIN_BORROW_BUFFER_PCT)
        debt_before = bal.borrowed if bal else Decimal(0)
        if need.amount <= 0:
            self.writer.update(pos.trade_key, tr.borrow_recorded, need.asset, Decimal(0), -1)
            self.rt.event("margin_borrow_none", pos.trade_key, asset=need.asset, reason="enough free balance")
            return True
        if self.writer.update(pos.trade_key, tr.borrow_recorded, need.asset, need.amount, 0, debt_before) is None:
            return False
        tran = self.client.borrow(need.asset, need.amount, self._symbol())
        self.writer.update(pos.trade_key, tr.borrow_done, tran)
        pos.margin_borrow_tran_id, pos.margin_borrow_asset, pos.margin_borrowed = tran, need.asset, need.amount
        self.rt.event("margin_borrowed", pos.trade_key, asset=need.asset, amount=need.amount, tran_id=tran)
        return True

    def _confirm_borrow(self, pos: Position) -> bool:
        """After a crash between recording the intent and the reply: the account's debt says whether it was done."""
        bal = self.client.margin_wallet(self.cfg.SYMBOL).get(pos.margin_borrow_asset)
        debt = bal.borrowed if bal else Decimal(0)
        if debt >= pos.margin_debt_before + pos.margin_borrowed:
            self.writer.update(pos.trade_key, tr.borrow_done, -1)
            pos.margin_borrow_tran_id = -1
            self.rt.event("margin_borrow_confirmed", pos.trade_key, asset=pos.margin_borrow_asset, debt=debt)
            return True
        self.writer.update(pos.trade_key, tr.borrow_recorded, "", Decimal(0), 0)
        pos.margin_borrow_asset, pos.margin_borrowed = "", Decimal(0)
        return self._borrow(pos)

    def repay(self, p: Position) -> None:
        """Give back a manual borrow of an entry that was aborted before anything filled."""
        try:
            self.client.repay(p.margin_borrow_asset, p.margin_borrowed, self._symbol())
            self.rt.event("margin_repaid", p.trade_key, asset=p.margin_borrow_asset, amount=p.margin_borrowed,
                          reason="entry aborted")
        except BinanceError as e:
            self.rt.event("margin_repay_failed", p.trade_key, level="error", error=str(e))
            self.rt.notify("entry_error", f"repay after aborted entry failed: {e}", "ERROR", p.trade_key,
                           cause="repay")

