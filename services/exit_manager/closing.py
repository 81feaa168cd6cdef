"""Close: verify nothing of the trade is open, repay (margin, manual borrow), free the slot and start the cooldown,
in one transaction with the CLOSED event."""
from __future__ import annotations

from functools import partial

from services.exit_manager.margin import repay_after_close
from services.exit_manager.parts import Part
from shared.domain.exit_rules import close_summary, held_qty
from shared.domain import transitions as tr
from shared.domain.position import Position


class Closer(Part):
    """Ends a position whose legs are all done."""

    def close(self, pos: Position) -> None:
        """All legs done: verify nothing of the trade is left open, then free the slot and start the cooldown."""
        self.exchange.cancel_all(pos)
        repay_after_close(self.rt, self.client, pos)
        now = self.rt.clock.now()
        summary = close_summary(pos, now)
        leftover = held_qty(pos, self.fee_rate, self.f.step_size)
        msg = tr.event(self.cfg.key("positions"), "CLOSED", pos.trade_key, now, reason=summary.exit_reason,
                       pnl=str(summary.pnl_quote))
        self.rt.store.update(partial(tr.closed, trade_key=pos.trade_key, summary=summary,
                                     cooldown_until=now + self.cfg.COOLDOWN_SEC, messages=[msg]))
        self.rt.event("position_closed", pos.trade_key, reason=summary.exit_reason, qty=summary.qty,
                      avg_entry=summary.avg_entry, avg_exit=summary.avg_exit, pnl=summary.pnl_quote,
                      r=summary.r_multiple, dust=leftover, dust_delta=summary.dust_delta, dust_in=summary.dust_in)
        self.rt.notify("closed", f"{summary.exit_reason}: pnl {summary.pnl_quote} ({summary.r_multiple} R)", "INFO",
                       pos.trade_key)
