"""The position as the exit manager reads and writes it: every write is one named transition
(shared/domain/transitions.py) applied in one Redis transaction through the state store, only while the position
is still the same trade in the exit phase."""
from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any

from shared.domain import transitions as tr
from shared.domain.position import EXIT_PHASES, Position
from shared.runtime import Runtime


class PositionStore:
    """Reads and transactional writes of the position in its exit phase."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def pos(self) -> Position | None:
        """The position if it is in the exit phase, else None."""
        p = self.rt.store.load().position
        return p if p is not None and p.status in EXIT_PHASES else None

    def apply(self, trade_key: str, transition: Callable[..., Any], *args: Any) -> tuple[Position | None, Any]:
        """Apply `transition(position, *args)` if the position is still this trade in the exit phase; the position
        afterwards and what the transition returned (None when it was not applied)."""
        applied = tr.Applied()
        p = self.rt.store.update(partial(tr.on_position, trade_key=trade_key, phases=EXIT_PHASES, applied=applied,
                                         transition=transition, args=args)).position
        ok = p is not None and p.trade_key == trade_key and p.status in EXIT_PHASES
        return (p if ok else None), applied.result

    def mutate(self, trade_key: str, transition: Callable[..., Any], *args: Any) -> Position | None:
        """`apply`, the position afterwards."""
        return self.apply(trade_key, transition, *args)[0]

    def mutate_leg(self, trade_key: str, name: str, transition: Callable[..., Any], *args: Any) -> Position | None:
        """Apply `transition(position, leg, *args)` to the leg `name`, as `mutate`."""
        return self.mutate(trade_key, tr.on_leg, name, transition, *args)

    def mark_placed(self, pos: Position, name: str) -> Position | None:
        """The leg's current attempt rests on the exchange."""
        return self.mutate_leg(pos.trade_key, name, tr.leg_placed, time.time())

    def request_flatten(self, pos: Position, reason: str) -> Position | None:
        """Record that the position is to be closed at market (the next tick carries it out)."""
        p = self.mutate(pos.trade_key, tr.flatten_requested, reason)
        self.rt.event("flatten_requested", pos.trade_key, level="warning", reason=reason)
        self.rt.notify("flatten", f"flatten requested: {reason}", "WARN", pos.trade_key)
        return p
