"""The one executor of the exit side's actions: each typed action of shared/domain/exit_decide.py is carried out
here by the part that owns it (idempotently: deterministic client ids, adopt before place, the state written before
the exchange call), and its result written by a named transition.

| action | carried out by |
|---|---|
| `PlanLegs` | `LegPlacer.init_legs` |
| `PlaceLeg` | `LegPlacer.place` / `place_new` (several NEW legs at once); a refusal: `LegRefusals.refused` |
| `FinishMove` | `StopMover.resolve_replacing` |
| `MoveStop`, `SettleBreakEven`, `StartTrailing`, `EvaluateTrail`, `RequestFlatten` | `FavourMoves` (break-even, trailing) |
| `Flatten` | `Flattener.flatten` |
| `Close` | `Closer.close` |
| (the dust ledger's carry, once the stops rest: `dust.carry_due`) | `DustCarrier.maybe_carry` |
"""
from __future__ import annotations

from services.exit_manager.closing import Closer
from services.exit_manager.counting import LegCounter
from services.exit_manager.dust_carry import DustCarrier
from services.exit_manager.favour import FavourMoves
from services.exit_manager.flatten import Flattener
from services.exit_manager.learning import FillLearner
from services.exit_manager.manual_close import ManualCloseWatch
from services.exit_manager.parts import Parts
from services.exit_manager.placement import LegPlacer
from services.exit_manager.refusals import LegRefusals
from services.exit_manager.stop_moves import StopMover
from shared.domain.exit_decide import Action, Close, ExitView, Flatten, PlaceLeg, lifecycle
from shared.domain.position import LegStatus, Position


class ExitActions:
    """The parts, wired once (each names only the parts it calls), and the carrying out of a tick's actions."""

    def __init__(self, p: Parts) -> None:
        self.p, self.rt, self.store = p, p.rt, p.store
        self.counter = LegCounter(p)
        self.closer = Closer(p)
        self.manual = ManualCloseWatch(p, self.counter, self.closer)
        self.flattener = Flattener(p, self.counter, self.closer, self.manual.coins_missing)
        self.learner = FillLearner(p, self.counter)
        self.refusals = LegRefusals(p, self.manual)
        self.placer = LegPlacer(p, self.refusals.refused)
        self.mover = StopMover(p, self.counter, self.placer)
        self.favour = FavourMoves(p, self.mover)
        self.dust = DustCarrier(p, self.mover)

    def learn(self, pos: Position) -> Position | None:
        """The tick's inputs: what the exchange did with the legs, then the manual-close watch."""
        if not pos.legs and not pos.flatten_requested:
            pos = self.placer.init_legs(pos)
        pos = self.learner.learn(pos)
        return self.manual.watch(pos) if pos is not None else None

    def decide(self, pos: Position) -> list[Action]:
        """`exit_decide.lifecycle` on the position and what this process knows (a refused close waits)."""
        return lifecycle(pos, ExitView(flatten_wait=not self.flattener.due(pos)), self.rt.clock.now())

    def run(self, pos: Position, actions: list[Action]) -> None:
        """Carry out the actions `lifecycle` decided: a flatten or a close alone, else the placements, then the
        stop moves in the position's favour, decided on the position as it is afterwards."""
        if any(isinstance(a, Flatten) for a in actions):
            self.flattener.flatten(pos)
        elif any(isinstance(a, Close) for a in actions):
            self.closer.close(pos)
        elif not pos.flatten_requested:
            self._place(pos, actions)

    def _place(self, pos: Position, actions: list[Action]) -> None:
        """PlaceLeg / FinishMove (several NEW legs at once), then, the stops resting, the dust ledger's carry, then
        break-even and trailing."""
        new = [next(lg for lg in pos.legs if lg.name == a.leg) for a in actions if isinstance(a, PlaceLeg)]
        if len(new) > 1:
            pos = self.placer.place_new(pos, new) or self.store.pos()
            if pos is None or pos.flatten_requested:
                return
        for a in actions:
            leg = next(lg for lg in pos.legs if lg.name == a.leg)
            if leg.status not in (LegStatus.NEW, LegStatus.REPLACING) or (
                    leg.errors and self.rt.clock.now() < pos.exits_next_at):
                continue  # carried out already (place_new above), or refused just now: it waits its retry
            p = self.placer.place(pos, leg) if leg.status == LegStatus.NEW else self.mover.resolve_replacing(pos, leg)
            pos = p or self.store.pos()
            if pos is None or pos.flatten_requested:
                return
        pos = self.dust.maybe_carry(pos)   # the stops resting: the dust ledger's carry (dust_carry.py)
        if pos is None or pos.flatten_requested:
            return
        pos = self.favour.maybe_break_even(pos) or pos
        self.favour.maybe_trail(pos)
