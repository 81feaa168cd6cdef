"""position_engine: from a signal to a filled, recorded entry, exactly once.

Start-up: exchange filters, then reconciliation with the exchange (reconcile.py), then the loop. The loop
reads operator commands (commands.py), the `orders` stream (order updates from user_stream, order_feed.py), ticks
the entry in progress (tracker.py: timeouts, and REST queries only as the fallback, within a weight budget) and
takes signals (signals.py). Every step is idempotent against a crash: the intent (client id) is saved before sending
(sender.py), an UNKNOWN outcome is resolved by querying that id, and the hand-over (ENTRY_FILLED) is
written in the same Redis transaction as the state change (writer.py).
"""
from __future__ import annotations

from services.position_engine.commands import CommandHandler, HaltKeeper, align_halt
from services.position_engine.loss_guard import LossGuard
from services.position_engine.order_feed import OrderFeed
from services.position_engine.reconcile import Reconciler
from services.position_engine.sender import EntrySender
from services.position_engine.plan_inputs import PlanInputs
from services.position_engine.signals import SignalHandler
from services.position_engine.tracker import EntryTracker
from services.position_engine.writer import PositionWriter
from shared.adapters.binance_rest import BinanceClient
from shared.adapters.lockstep import LockStep
from shared.adapters.redis_streams import GroupConsumer
from shared.domain.messages import Command, Signal
from shared.domain.order_updates import OrderUpdate
from shared.domain.position import ENGINE_PHASES
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime, boot
from shared.service_loop import handle_entry, run_guarded, wait_for_filters

PROCESS = "position_engine"


class Engine:
    """The entry phase of the position: its parts, wired once."""

    def __init__(self, rt: Runtime, client: BinanceClient, filters: SymbolFilters) -> None:
        self.rt = rt
        self.writer = PositionWriter(rt, filters)
        self.inputs = PlanInputs(rt, client, filters.quote_asset)
        self.feed = OrderFeed(rt, margin=bool(client.margin))
        self.sender = EntrySender(rt, client, filters, self.writer, self.feed)
        self.tracker = EntryTracker(rt, client, filters, self.writer, self.sender, self.feed)
        self.signal_handler = SignalHandler(rt, filters, self.writer, self.sender, self.tracker, self.inputs)
        self.loss_guard = LossGuard(rt, lambda: self.inputs.fee_rate)
        self.command_handler = CommandHandler(rt, self.writer, self.tracker, on_resume=self.loss_guard.resume)
        self.reconciler = Reconciler(rt, client, filters, self.writer, self.inputs)
        self.signals = GroupConsumer(rt.r, rt.cfg.key("signals"), PROCESS, PROCESS)
        self.commands = GroupConsumer(rt.r, rt.cfg.key("commands"), PROCESS, PROCESS, start_id="$")
        self.lockstep = LockStep(rt.r, rt.cfg.EXEC_PREFIX, PROCESS, rt.cfg.REPLAY_LOCKSTEP)
        self.halt_keeper = HaltKeeper(rt)

    def step(self) -> None:
        """One loop iteration: heartbeat, commands, order updates, the entry in progress, at most one signal.
        In a lock-step replay, an iteration with nothing to read acknowledges the market time, then waits."""
        self.rt.beater.maybe_beat(self.feed.info())
        self.halt_keeper.maybe_adopt()
        self.lockstep.begin()
        if self.lockstep.ws_behind:  # lock-step: this point's order updates are not all on `orders` yet
            self.lockstep.wait(1000)
            return
        busy = False
        for e in self.commands.read(block_ms=None, count=10):
            busy = True
            handle_entry(self.rt, e, self._command, self.commands)
        for e in self.feed.consumer.read(block_ms=None, count=50):
            busy = True
            handle_entry(self.rt, e, self._order_update, self.feed.consumer)
        busy = self.loss_guard.poll() or busy
        self.tracker.tick()
        self.inputs.warm()
        block = None if self.lockstep.enabled else (20 if self._entry_in_progress() else 200)
        for e in self.signals.read(block_ms=block, count=1):
            busy = True
            handle_entry(self.rt, e, self._signal, self.signals)
        self.lockstep.end(busy)
        if self.lockstep.enabled and not busy:
            self.lockstep.wait(1000)  # woken by the next market time or by anything any process writes

    def _command(self, m: object) -> None:
        if isinstance(m, Command):
            self.command_handler.on_command(m)

    def _order_update(self, m: object) -> None:
        if isinstance(m, OrderUpdate):
            self.tracker.on_update(m)

    def _signal(self, m: object) -> None:
        if isinstance(m, Signal):
            self.signal_handler.on_signal(m)

    def _entry_in_progress(self) -> bool:
        p = self.rt.store.load().position
        return p is not None and p.status in ENGINE_PHASES


def run(rt: Runtime) -> None:
    """Start-up (filters, snapshot, reconcile) then the main loop until SIGTERM."""
    client = rt.client()
    engine = Engine(rt, client, wait_for_filters(rt, client))
    newer = rt.store.sync_snapshot()   # the newer of Redis' state and the snapshot file wins (by version)
    if newer == "redis":
        rt.event("state_restored_from_snapshot", level="warning", state_version=rt.store.load().version)
    align_halt(rt)
    engine.reconciler.run()
    engine.loss_guard.count_last_closed()   # a trade closed while this process was down is counted now
    rt.event("engine_ready", state_version=rt.store.load().version, fee_rate=engine.inputs.fee_rate,
             fee_source=engine.inputs.fee_source, reprice=engine.inputs.reprice, feed_symbol=rt.cfg.FEED_SYMBOL)
    run_guarded(rt, engine.step)


def validate_only(rt: Runtime) -> None:
    """LIVE_VALIDATE_ONLY=1: run the preflight (read-only, the stack's heartbeats not required), print it and
    exit 0 when ready, 1 when not, without trading (the original ran a connection test and stopped)."""
    from shared.adapters.preflight_probe import render_lines, run_preflight
    from shared.domain.preflight import ready
    checks = run_preflight(rt.cfg, rt.r, rt.client(), rt.clock.now, stack=False)
    for line in render_lines(checks):
        print(line, flush=True)
    ok = ready(checks)
    rt.event("live_validate_only", level="info" if ok else "error", ready=ok,
             failed=[c.name for c in checks if c.verdict == "FAIL"])
    raise SystemExit(0 if ok else 1)


def main() -> None:
    rt = boot(PROCESS)
    if rt.cfg.LIVE_VALIDATE_ONLY:
        validate_only(rt)
    run(rt)
