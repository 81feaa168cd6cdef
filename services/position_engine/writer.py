"""Every change the engine makes to the position: one transaction each (a named transition of
shared/domain/transitions.py), with its hand-over message."""
from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

from shared.domain import transitions as tr
from shared.domain.entry_rules import refusal
from shared.domain.position import ENGINE_PHASES, Phase, Position
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime


class PositionWriter:
    """The engine's only way to write the state document."""

    def __init__(self, rt: Runtime, f: SymbolFilters) -> None:
        self.rt, self.cfg, self.f = rt, rt.cfg, f

    def _msg(self, kind: str, trade_key: str, now: float, **detail: object) -> tr.Message:
        return tr.event(self.cfg.key("positions"), kind, trade_key, now, **detail)

    def update(self, trade_key: str, transition: Callable[..., Any], *args: Any) -> Position | None:
        """Apply the named `transition(position, *args)` if the slot still holds this trade in the entry phase;
        the position after."""
        applied = tr.Applied()
        p = self.rt.store.update(partial(tr.on_position, trade_key=trade_key, phases=ENGINE_PHASES,
                                         applied=applied, transition=transition, args=args)).position
        return p if p is not None and p.trade_key == trade_key and p.status in ENGINE_PHASES else None

    def claim(self, pos: Position, now: float, halted: bool, audit: list | None = None) -> bool:
        """Write the PENDING position and start the lock, re-checking the gates inside the transaction.

        The file snapshot is left to the caller's `sync_snapshot()` after the send: Redis holds the intent
        before the order leaves, and if Redis and the snapshot were both lost, start-up reconciliation
        adopts the order from the exchange. `audit` entries ((stream, message) pairs) are appended in the same
        transaction, which saves the hot path a round trip."""
        msgs = [self._msg("ENTRY_PLACED", pos.trade_key, now, client_id=pos.entry_client_id), *(audit or [])]
        refused = partial(_refused, now=now, halted=halted)
        p = self.rt.store.update(partial(tr.entry_placed, pos=pos, now=now, lock_until=now + self.cfg.LOCK_SEC,
                                         refused=refused, messages=msgs), snapshot=False).position
        return p is not None and p.trade_key == pos.trade_key

    def lock(self, now: float) -> None:
        """Start the LOCK_SEC lock without a position: the original sets it before planning, so a signal whose plan
        is skipped still holds the next signals off for LOCK_SEC (§13)."""
        self.rt.store.update(partial(tr.lock_started, until=now + self.cfg.LOCK_SEC))

    def adopt(self, pos: Position) -> bool:
        """Put a position found on the exchange into an empty slot (OPEN; OPEN_FILLED with its hand-over when
        it is already filled). False when the slot is taken."""
        now = self.rt.clock.now()
        if pos.status == Phase.OPEN_FILLED:
            msgs = [tr.filled_event(self.cfg.key("positions"), pos, now)]
        else:
            msgs = [self._msg("ENTRY_PLACED", pos.trade_key, now, client_id=pos.entry_client_id, adopted=True)]
        p = self.rt.store.update(partial(tr.entry_adopted, pos=pos, lock_until=now + self.cfg.LOCK_SEC,
                                         messages=msgs)).position
        return p is not None and p.trade_key == pos.trade_key

    def fill_summary(self, p: Position, now: float) -> None:
        """Mark a position filled: OPEN_FILLED with its average entry price."""
        tr.entry_filled(p, now, self.f.tick_size)

    def hand_over(self, trade_key: str) -> Position | None:
        """OPEN_FILLED + ENTRY_FILLED on `positions`, atomically: from here the exit manager owns it."""
        p = self.rt.store.update(partial(tr.handed_over, trade_key=trade_key, phases=ENGINE_PHASES,
                                         now=self.rt.clock.now(), tick=self.f.tick_size,
                                         stream=self.cfg.key("positions"))).position
        return p if p is not None and p.trade_key == trade_key and p.status == Phase.OPEN_FILLED else None

    def abort(self, trade_key: str, reason: str) -> Position | None:
        """Free the slot (ENTRY_ABORTED on `positions`); the aborted position, or None if it was not ours."""
        gone = tr.Applied()
        msgs = [self._msg("ENTRY_ABORTED", trade_key, self.rt.clock.now(), reason=reason)]
        self.rt.store.update(partial(tr.entry_aborted, trade_key=trade_key, phases=ENGINE_PHASES, gone=gone,
                                     messages=msgs))
        return gone.result


def _refused(st, now: float, halted: bool) -> bool:
    return refusal(st, now, halted) is not None
