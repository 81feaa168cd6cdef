"""Margin wallets of the engine: loans (borrow, repay, limits), hourly interest, order side effects.

Pure like the engine it is mixed into: market time only, Decimal only.
"""
from __future__ import annotations

from decimal import ROUND_UP, Decimal
from typing import TYPE_CHECKING

from shared.domain.risk_math import floor_to_step
from services.paper_exchange import ledger
from services.paper_exchange.model import ApiError, EngineState, NewOrder, POrder

if TYPE_CHECKING:
    from services.paper_exchange.settings import Settings

_Q8 = Decimal("0.00000001")


class MarginMixin:
    """Loan handling for `Engine` (which provides `s`, `st` and `market_price`)."""
    s: Settings
    st: EngineState

    def market_price(self, side: str) -> Decimal:  # provided by Engine
        raise NotImplementedError

    def max_borrowable(self, account: str, asset: str) -> Decimal:
        """What `asset` can still be borrowed: liabilities may reach net value * (leverage - 1)."""
        if asset not in (self.s.base_asset, self.s.quote_asset):
            raise ApiError(-3027, "Not a valid margin asset.")
        net, liab = ledger.net_value(self.st, account, self.s.base_asset, self.st.last)
        room = max(net * (self.s.margin_leverage - 1) - liab, Decimal(0))
        px = self.st.last if asset == self.s.base_asset else Decimal(1)
        return floor_to_step(room / px, _Q8)

    def borrow(self, account: str, asset: str, amount: Decimal) -> int:
        """Borrow into a margin wallet; -3006 above the limit. Returns the transaction id."""
        if amount <= 0:
            raise ApiError(-1100, "Illegal characters found in parameter 'amount'.")
        if amount > self.max_borrowable(account, asset):
            raise ApiError(-3006, "Your borrow amount has exceed maximum borrow amount.")
        ledger.borrow(self.st, account, asset, amount)
        # Binance charges the first hour's interest at once, then on every hour boundary.
        ledger.balance(self.st, asset, account).interest += self._interest(amount, 1)
        return self._tran_id()

    def _interest(self, amount: Decimal, hours: int) -> Decimal:
        return (amount * self.s.margin_interest_hourly * hours).quantize(_Q8, rounding=ROUND_UP)

    def _accrue_interest(self, hours: int) -> None:
        for w in self.st.margin.values():
            for b in w.values():
                if b.borrowed > 0:
                    b.interest += self._interest(b.borrowed, hours)

    def repay(self, account: str, asset: str, amount: Decimal) -> int:
        """Repay a margin loan from the wallet's free balance. Returns the transaction id."""
        if amount <= 0:
            raise ApiError(-1100, "Illegal characters found in parameter 'amount'.")
        ledger.repay(self.st, account, asset, amount)
        return self._tran_id()

    def _tran_id(self) -> int:
        self.st.next_tran_id += 1
        return self.st.next_tran_id - 1

    def _auto_borrow(self, o: POrder, req: NewOrder) -> None:
        """MARGIN_BUY / AUTO_BORROW_REPAY: borrow the shortfall of what the order needs."""
        if o.side == "SELL":
            asset, need = self.s.base_asset, o.orig_qty
        elif o.type == "MARKET":
            asset = self.s.quote_asset
            need = req.quote_qty if req.quote_qty is not None else self.market_price("BUY") * o.orig_qty
        else:
            asset, need = self.s.quote_asset, (o.price or o.stop_price) * o.orig_qty
        self._borrow_shortfall(o.account, asset, need, o)

    def _borrow_shortfall(self, account: str, asset: str, need: Decimal, o: POrder) -> None:
        short = need - ledger.balance(self.st, asset, account).free
        if short > 0:
            self.borrow(account, asset, short)
            o.borrowed_amount, o.borrowed_asset = short, asset

    def _auto_repay(self, account: str, asset: str) -> None:
        """AUTO_REPAY: what a fill brought in pays back the loan in that asset, as far as it goes."""
        b = ledger.balance(self.st, asset, account)
        amount = min(b.free, b.borrowed + b.interest)
        if amount > 0:
            ledger.repay(self.st, account, asset, amount)
