"""Every change the engine makes to the position: one transaction each, with its hand-over message."""
from __future__ import annotations

from collections.abc import Callable

from shared.domain.entry_rules import refusal
from shared.domain.messages import PositionEvent
from shared.domain.position import ENGINE_PHASES, Position, State
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime


class PositionWriter:
    """The engine's only way to write the state document."""

    def __init__(self, rt: Runtime, f: SymbolFilters) -> None:
        self.rt, self.cfg, self.f = rt, rt.cfg, f

    def _msg(self, kind: str, trade_key: str, now: float, **detail: object) -> tuple[str, PositionEvent]:
        return self.cfg.key("positions"), PositionEvent(kind=kind, trade_key=trade_key, at=now, detail=detail)

    def update(self, trade_key: str, mutate: Callable[[Position], None]) -> Position | None:
        """Apply `mutate(position)` if the slot still holds this trade in the entry phase; the position after."""
        def tx(st: State):
            if st.position is None or st.position.trade_key != trade_key or st.position.status not in ENGINE_PHASES:
                return None
            mutate(st.position)
            return st, []
        p = self.rt.store.update(tx).position
        return p if p is not None and p.trade_key == trade_key and p.status in ENGINE_PHASES else None

    def claim(self, pos: Position, now: float, halted: bool, audit: list | None = None) -> bool:
        """Write the PENDING position and start the lock, re-checking the gates inside the transaction.

        The file snapshot is left to the caller's `sync_snapshot()` after the send: Redis holds the intent
        before the order leaves, and if Redis and the snapshot were both lost, start-up reconciliation
        adopts the order from the exchange. `audit` entries ((stream, message) pairs) are appended in the same
        transaction, which saves the hot path a round trip."""
        def tx(st: State):
            if refusal(st, now, halted) is not None:
                return None
            st.position, st.lock_until = pos, now + self.cfg.LOCK_SEC
            return st, [self._msg("ENTRY_PLACED", pos.trade_key, now, client_id=pos.entry_client_id), *(audit or [])]
        p = self.rt.store.update(tx, snapshot=False).position
        return p is not None and p.trade_key == pos.trade_key

    def lock(self, now: float) -> None:
        """Start the LOCK_SEC lock without a position: the original sets it before planning, so a signal whose plan
        is skipped still holds the next signals off for LOCK_SEC (§13)."""
        def tx(st: State):
            if st.lock_until >= now + self.cfg.LOCK_SEC:
                return None
            st.lock_until = now + self.cfg.LOCK_SEC
            return st, []
        self.rt.store.update(tx)

    def adopt(self, pos: Position) -> bool:
        """Put a position found on the exchange into an empty slot (OPEN; OPEN_FILLED with its hand-over when
        it is already filled). False when the slot is taken."""
        now = self.rt.clock.now()

        def tx(st: State):
            if st.position is not None:
                return None
            st.position, st.lock_until = pos, max(st.lock_until, now + self.cfg.LOCK_SEC)
            if pos.status == "OPEN_FILLED":
                return st, [self._filled_msg(pos, now)]
            return st, [self._msg("ENTRY_PLACED", pos.trade_key, now, client_id=pos.entry_client_id, adopted=True)]
        p = self.rt.store.update(tx).position
        return p is not None and p.trade_key == pos.trade_key

    def _filled_msg(self, p: Position, now: float) -> tuple[str, PositionEvent]:
        return self._msg("ENTRY_FILLED", p.trade_key, now, qty=str(p.filled_qty), avg_entry=str(p.avg_entry))

    def fill_summary(self, p: Position, now: float) -> None:
        """Mark a position filled: OPEN_FILLED with its average entry price."""
        p.status, p.filled_at = "OPEN_FILLED", now
        p.avg_entry = (p.filled_quote / p.filled_qty).quantize(self.f.tick_size / 100)

    def hand_over(self, trade_key: str) -> Position | None:
        """OPEN_FILLED + ENTRY_FILLED on `positions`, atomically: from here the exit manager owns it."""
        now = self.rt.clock.now()

        def tx(st: State):
            p = st.position
            if p is None or p.trade_key != trade_key or p.status not in ENGINE_PHASES:
                return None
            self.fill_summary(p, now)
            return st, [self._filled_msg(p, now)]
        p = self.rt.store.update(tx).position
        return p if p is not None and p.trade_key == trade_key and p.status == "OPEN_FILLED" else None

    def abort(self, trade_key: str, reason: str) -> Position | None:
        """Free the slot (ENTRY_ABORTED on `positions`); the aborted position, or None if it was not ours."""
        now = self.rt.clock.now()
        gone: list[Position] = []

        def tx(st: State):
            if st.position is None or st.position.trade_key != trade_key or st.position.status not in ENGINE_PHASES:
                return None
            gone.append(st.position)
            st.position = None
            return st, [self._msg("ENTRY_ABORTED", trade_key, now, reason=reason)]
        self.rt.store.update(tx)
        return gone[-1] if gone else None
