"""The dust ledger's carry (issue 22 §4): once the trade's legs rest, the ledger's whole steps ride on its trailing
stop. Deciding it needs the account (the free base beyond this trade's coins), so it is read only after the stops
rest: the first protection never waits for that round trip."""
from __future__ import annotations

import time
from decimal import Decimal

from services.exit_manager.parts import Part, Parts
from services.exit_manager.stop_moves import StopMover
from shared.adapters.binance_rest import BinanceError
from shared.domain import transitions as tr
from shared.domain.dust import carry, carry_due, our_locked
from shared.domain.exit_rules import held_qty
from shared.domain.position import Position


class DustCarrier(Part):
    """Decides the carry once per spot long, after its legs rest, and grows the trailing stop by it."""

    def __init__(self, p: Parts, mover: StopMover) -> None:
        super().__init__(p)
        self.mover = mover

    def maybe_carry(self, pos: Position) -> Position | None:
        """Decide the carry when it is due (`dust.carry_due`); the position afterwards (None: gone)."""
        if not carry_due(pos, self.cfg.TRADE_MODE):
            return pos
        extra = self._extra(pos)
        p, ids = self.store.apply(pos.trade_key, tr.dust_carried, extra, time.time())
        if p is None or ids is None:
            return p
        trail = next(lg for lg in p.legs if lg.name == "trail")
        self.rt.event("dust_carried", p.trade_key, qty=extra, leg="trail", trail_qty=trail.qty,
                      exit_qty=p.exit_qty, attempt=trail.attempt)
        self.mover.placer.wrote_fresh(ids.stop_id)   # recorded by this process just now: nothing exists under it
        return self.mover.resolve_replacing(p, trail) or self.store.pos()

    def _extra(self, pos: Position) -> Decimal:
        """The ledger's whole steps the trailing stop may sell too, capped by the account's free base beyond this
        trade's coins (the resting legs lock theirs); 0 when the ledger holds less than a step or the account
        cannot be read (the ledger keeps it for a later trade)."""
        ledger = self.rt.store.load().dust
        if ledger < self.f.step_size:
            return Decimal(0)
        try:
            free = self.client.account().get(self.f.base_asset, (Decimal(0), Decimal(0)))[0]
        except BinanceError as e:
            self.rt.event("dust_carry_skipped", pos.trade_key, level="warning", ledger=ledger, error=str(e))
            return Decimal(0)
        return carry(ledger, free + our_locked(pos), held_qty(pos, self.fee_rate, self.f.step_size),
                     self.f.step_size)
