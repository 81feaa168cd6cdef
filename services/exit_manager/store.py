"""The position as the exit manager reads and writes it: every write is one Redis transaction through the state
store, applied only while the position is still the same trade in the exit phase."""
from __future__ import annotations

import time
from collections.abc import Callable

from shared.domain.position import EXIT_PHASES, Leg, Position, State
from shared.runtime import Runtime


class PositionStore:
    """Reads and transactional writes of the position in its exit phase."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt

    def pos(self) -> Position | None:
        """The position if it is in the exit phase, else None."""
        p = self.rt.store.load().position
        return p if p is not None and p.status in EXIT_PHASES else None

    def mutate(self, trade_key: str, fn: Callable[[Position], None]) -> Position | None:
        """Apply `fn` to the position if it is still this trade in the exit phase; return it."""
        def tx(st: State):
            p = st.position
            if p is None or p.trade_key != trade_key or p.status not in EXIT_PHASES:
                return None
            fn(p)
            return st, []
        p = self.rt.store.update(tx).position
        return p if p is not None and p.trade_key == trade_key and p.status in EXIT_PHASES else None

    def mutate_leg(self, trade_key: str, name: str, fn: Callable[[Position, Leg], None]) -> Position | None:
        """Apply `fn` to the position and its leg `name`, as `mutate`."""
        def on_pos(p: Position) -> None:
            fn(p, next(leg for leg in p.legs if leg.name == name))
        return self.mutate(trade_key, on_pos)

    def mark_placed(self, pos: Position, name: str) -> Position | None:
        """The leg's current attempt rests on the exchange."""
        def fn(p: Position, leg: Leg) -> None:
            leg.status, leg.placed_at = "PLACED", time.time()
        return self.mutate_leg(pos.trade_key, name, fn)

    def request_flatten(self, pos: Position, reason: str) -> Position | None:
        """Record that the position is to be closed at market (the next tick carries it out)."""
        def fn(p: Position) -> None:
            if not p.flatten_requested:
                p.flatten_requested, p.status = reason, "CLOSING"
        p = self.mutate(pos.trade_key, fn)
        self.rt.event("flatten_requested", pos.trade_key, level="warning", reason=reason)
        self.rt.notify("flatten", f"flatten requested: {reason}", "WARN", pos.trade_key)
        return p
