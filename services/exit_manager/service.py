"""exit_manager: a filled position is never without a stop, from the first fill to the last coin.

Legs: tp1 and tp2 each rest as an OCO (LIMIT_MAKER take-profit + STOP_LOSS_LIMIT for that leg's quantity)
and the rest as a STOP_LOSS_LIMIT (the trailing leg), so the stops cover the whole position without
locking a coin twice. Each tick first learns what filled from the exchange's records, then acts: the records come
from the `orders` stream (user_stream) as they happen, an update about one of the trade's orders wakes a tick at
once; REST (open orders, then queries) is the fallback: at start, while the stream is down, when an update our own
action is owed is not on it in time, and as a slow safety sweep, all within EXIT_REST_WEIGHT_BUDGET_PER_MIN.
Placing, cancelling and flattening never wait for that budget. Every order id is deterministic (trade key, leg,
attempt): after a crash the manager adopts what exists.
"""
from __future__ import annotations

import time
from decimal import Decimal

from services.exit_manager.closing import Closer
from services.exit_manager.counting import LegCounter
from services.exit_manager.dust_carry import DustCarrier
from services.exit_manager.exchange import ExitExchange, TickAborted
from services.exit_manager.favour import FavourMoves
from services.exit_manager.flatten import Flattener
from services.exit_manager.learning import FillLearner
from services.exit_manager.manual_close import ManualCloseWatch
from services.exit_manager.margin import side_effect
from services.exit_manager.order_feed import ExitFeed, Waker
from services.exit_manager.placement import LegPlacer
from services.exit_manager.stop_moves import StopMover
from services.exit_manager.store import PositionStore
from shared.adapters.binance_rest import BinanceClient, BinanceError
from shared.adapters.fee_rate import exit_fee_rate
from shared.adapters.lockstep import LockStep
from shared.adapters.redis_streams import Entry, GroupConsumer
from shared.command_intake import refused
from shared.domain.exit_decide import Close, ExitView, Flatten, PlaceLeg, lifecycle
from shared.domain.messages import Command, handed_over_position
from shared.domain.order_updates import OrderUpdate
from shared.domain.position import LegStatus, Position
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime, boot
from shared.service_loop import handle_entry, run_guarded, wait_for_filters

PROCESS = "exit_manager"


class ExitManager:
    """The exit phase of the position: its parts, wired once, and the tick that runs them in order."""

    def __init__(self, rt: Runtime, client: BinanceClient, f: SymbolFilters, fee_rate: Decimal | None = None) -> None:
        self.rt, self.cfg = rt, rt.cfg
        # commission rate of the exits (a short's legs buy enough to cover it): read once at start
        fee = rt.cfg.EXIT_FEE_RATE_FALLBACK if fee_rate is None else fee_rate
        self.positions = GroupConsumer(rt.r, self.cfg.key("positions"), PROCESS, PROCESS)
        self.commands = GroupConsumer(rt.r, self.cfg.key("commands"), PROCESS, PROCESS, start_id="$")
        self._next_tick = 0.0
        self.feed = ExitFeed(rt, margin=bool(client.margin))
        self.store = PositionStore(rt)
        self.exchange = ExitExchange(rt, client, self.feed)
        self.counter = LegCounter(rt, f, self.store, self.exchange, self.feed)
        self.closer = Closer(rt, client, f, fee, self.exchange)
        self.manual = ManualCloseWatch(rt, client, f, fee, self.feed, self.store, self.exchange, self.counter,
                                       self.closer)
        self.flattener = Flattener(rt, client, f, fee, self.store, self.exchange, self.counter, self.manual,
                                   self.closer)
        self.learner = FillLearner(rt, client, self.feed, self.store, self.exchange, self.counter)
        self.placer = LegPlacer(rt, client, f, fee, self.feed, self.store, self.exchange, self.manual)
        self.mover = StopMover(rt, client, f, self.feed, self.store, self.exchange, self.counter, self.placer)
        self.favour = FavourMoves(rt, f, self.store, self.exchange, self.mover)
        self.dust = DustCarrier(rt, client, f, fee, self.store, self.mover)

    # ---- the tick -------------------------------------------------------------------------------

    def tick(self, force: bool = False) -> None:
        """Learn, then finalise / flatten / place / move, in that order."""
        if not force and time.monotonic() < self._next_tick:
            return
        self._next_tick = time.monotonic() + self.cfg.REST_POLL_MS / 1000
        pos = self.store.pos()
        if pos is None:
            return
        self.feed.follow(pos.trade_key)
        try:
            self._tick(pos)
        except TickAborted as e:
            self.rt.log.warning("tick_aborted", trade_key=pos.trade_key, reason=str(e))
        except BinanceError as e:
            # Unreachable, or a refusal nobody planned for: every step is recorded before it is taken, so the
            # next tick resumes from the state and the exchange.
            self.rt.log.warning("tick_failed", trade_key=pos.trade_key, error=str(e), kind=type(e).__name__)

    def _tick(self, pos: Position) -> None:
        if not pos.legs and not pos.flatten_requested:
            pos = self.placer.init_legs(pos)
        pos = self.learner.learn(pos)
        pos = self.manual.watch(pos) if pos is not None else None
        if pos is None:
            return
        actions = lifecycle(pos, ExitView(flatten_wait=not self.flattener.due(pos)), self.rt.clock.now())
        if any(isinstance(a, Flatten) for a in actions):
            self.flattener.flatten(pos)
        elif any(isinstance(a, Close) for a in actions):
            self.closer.close(pos)
        elif not pos.flatten_requested:
            self._act(pos, actions)

    def _act(self, pos: Position, actions: list) -> None:
        """Carry out the placements `lifecycle` decided (several NEW legs at once), then, the stops resting, the
        dust ledger's carry (dust_carry.py), then the stop moves in the position's favour, decided on the position
        as it is afterwards."""
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
        pos = self.dust.maybe_carry(pos)
        if pos is None or pos.flatten_requested:
            return
        pos = self.favour.maybe_break_even(pos) or pos
        self.favour.maybe_trail(pos)

    # ---- the hand-over -------------------------------------------------------------------------

    def take_over(self, msg: object) -> None:
        """ENTRY_FILLED is the hand-over: the legs are planned from the position it carries (the state document
        stays the store; a position whose event was consumed before a restart is planned by the tick)."""
        pos = handed_over_position(msg)
        cur = self.store.pos()
        if pos is None or cur is None or cur.trade_key != pos.trade_key or cur.legs or cur.flatten_requested:
            return
        self.feed.follow(pos.trade_key)
        self.placer.init_legs(pos)

    # ---- the `orders` stream --------------------------------------------------------------------

    def on_updates(self, entries: list[Entry]) -> bool:
        """Take in `orders` stream entries; True when one is about the current trade's exit orders."""
        if not entries:
            return False
        pos = self.store.pos()
        if pos is not None:
            self.feed.follow(pos.trade_key)
        woke = False
        for e in entries:
            if e.msg is None:
                self.rt.event("stream_entry_undecodable", level="error", stream=self.feed.consumer.stream, id=e.id,
                              error=e.error)
            elif isinstance(e.msg, OrderUpdate) and pos is not None:
                woke = self.feed.on_update(e.msg) or woke
        return woke

    # ---- commands ------------------------------------------------------------------------------

    def on_command(self, cmd: Command) -> None:
        """flatten: close the position at market (the other commands belong to the engine)."""
        if cmd.cmd != "flatten":
            return
        pos = self.store.pos()
        if pos is None:
            self.rt.event("command_noop", cmd=cmd.cmd, by=cmd.by, reason="no filled position", target=cmd.trade_key)
            return
        if refused(self.rt, cmd, pos.trade_key):   # for another trade, or expired: never applied later
            return
        self.rt.event("command_accepted", pos.trade_key, cmd=cmd.cmd, by=cmd.by, reason=cmd.reason)
        self.store.request_flatten(pos, "operator")
        self.tick(force=True)


def run(rt: Runtime) -> None:
    """Start-up then the loop: wake on `positions`, `orders` and `commands` entries, tick the exits."""
    client = rt.client()
    if client.margin:
        client.side_effect_type = side_effect(rt)
    f = wait_for_filters(rt, client)
    fee_rate, source = exit_fee_rate(client, rt.cfg.EXIT_FEE_RATE_FALLBACK)
    rt.event("exit_fee_rate", rate=fee_rate, source=source)
    mgr = ExitManager(rt, client, f, fee_rate)
    rt.store.sync_snapshot()
    rt.event("exit_manager_ready", state_version=rt.store.load().version)
    waker = Waker(rt.r, [rt.cfg.key("positions"), rt.cfg.key("orders"), rt.cfg.key("commands")])
    # lock-step replay: every new market time gets a tick; an iteration with nothing to read acknowledges it
    lockstep = LockStep(rt.r, rt.cfg.EXEC_PREFIX, PROCESS, rt.cfg.REPLAY_LOCKSTEP)

    def step() -> None:
        rt.beater.maybe_beat(mgr.feed.info())
        lockstep.begin()
        if lockstep.ws_behind:  # lock-step: this point's order updates are not all on `orders` yet
            lockstep.wait(1000)
            return
        if not lockstep.enabled:
            waker.mark()  # before the reads: whatever arrives after them ends the wait below at once
        cmds = mgr.commands.read(block_ms=None, count=10)
        for e in cmds:
            handle_entry(rt, e, lambda m: mgr.on_command(m) if isinstance(m, Command) else None, mgr.commands)
        woke = mgr.positions.read(block_ms=None, count=10)
        for e in woke:
            mgr.take_over(e.msg)
            mgr.positions.ack(e.id)
        updates = mgr.feed.consumer.read(block_ms=None, count=50)
        force = bool(woke) or mgr.on_updates(updates) or lockstep.new_tick
        mgr.learner.replay_point = mgr.learner.replay_point or lockstep.new_tick
        if force or not lockstep.enabled:  # lock-step: no wall-time ticks in between (the same trades at any speed)
            mgr.tick(force=force)
        for e in updates:  # after the tick: what they caused is in the state (or REST will tell again)
            mgr.feed.consumer.ack(e.id)
        busy = bool(cmds or woke or updates)
        lockstep.end(busy)
        if lockstep.enabled:
            if not busy:
                lockstep.wait(1000)
        elif not woke and not updates:
            waker.wait(50)
    run_guarded(rt, step)


def main() -> None:
    rt = boot(PROCESS)
    run(rt)
