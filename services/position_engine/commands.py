"""Operator commands of the entry phase: halt, resume, cancel_entry (flatten belongs to the exit manager)."""
from __future__ import annotations

import time
from collections.abc import Callable

import msgspec

from services.position_engine.tracker import EntryTracker
from services.position_engine.writer import PositionWriter
from shared.command_intake import refused
from shared.domain import transitions as tr
from shared.domain.messages import Command
from shared.domain.position import ENGINE_PHASES
from shared.runtime import Runtime


def adopt_halt(rt: Runtime) -> None:
    """Copy a halt flag set by another process (the watchdog's I13 kill switch writes only the flag) into the
    state, so the snapshot keeps it if Redis comes back empty."""
    raw = rt.r.get(rt.cfg.key("halt"))
    if raw is None:
        return
    try:
        doc = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        doc = {"raw": raw.decode("utf-8", "replace")}
    rt.store.set_halt(doc if isinstance(doc, dict) else {"value": doc})


class HaltKeeper:
    """While running: a halt flag another process set (the watchdog's I13 kill switch may SET only the flag) is
    copied into the state within HALT_ADOPT_SEC, so a Redis that comes back empty keeps it even when no signal
    arrived in between (the signal path adopts it too)."""
    HALT_ADOPT_SEC = 1.0

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self._next = 0.0

    def maybe_adopt(self) -> None:
        """At most every HALT_ADOPT_SEC (wall): one EXISTS, and the copy written when it is missing."""
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.HALT_ADOPT_SEC
        if self.rt.halted() and self.rt.store.load().halt is None:
            adopt_halt(self.rt)
            self.rt.event("halt_adopted", level="warning", halt=self.rt.store.load().halt)


def align_halt(rt: Runtime) -> None:
    """At start: the halt flag and its copy in the state agree. A flag without a copy is adopted; a copy without
    the flag (another process restored the state from the snapshot without it) sets the flag again: halted it
    stays until a `resume` command clears both."""
    st = rt.store.load()
    if rt.halted():
        if st.halt is None:
            adopt_halt(rt)
    elif st.halt is not None:
        rt.r.set(rt.cfg.key("halt"), msgspec.json.encode(st.halt), nx=True)
        rt.event("halt_restored", level="warning", halt=st.halt)


class CommandHandler:
    """Applies one operator command and records it."""

    def __init__(self, rt: Runtime, writer: PositionWriter, tracker: EntryTracker,
                 on_resume: Callable[[], None] | None = None) -> None:
        self.rt, self.cfg, self.writer, self.tracker = rt, rt.cfg, writer, tracker
        self.on_resume = on_resume   # the loss limits' latch is cleared before the halt flag (loss_guard.py)

    def on_command(self, cmd: Command) -> None:
        """Dispatch by name after the target/expiry rule (a refused command is recorded, never applied later);
        commands of other services are ignored."""
        fn = {"halt": self._halt, "resume": self._resume, "cancel_entry": self._cancel_entry}.get(cmd.cmd)
        if fn is None:
            return
        pos = self.rt.store.load().position
        current = pos.trade_key if pos is not None and pos.status in ENGINE_PHASES else None
        if cmd.cmd == "cancel_entry" and current is None:
            self.rt.event("command_noop", cmd=cmd.cmd, by=cmd.by, reason="no pending entry", target=cmd.trade_key)
            return
        if refused(self.rt, cmd, current):
            return
        fn(cmd)

    def _halt(self, cmd: Command) -> None:
        # the flag and its copy in the state (so the snapshot keeps the halt if Redis comes back empty)
        self.rt.store.set_halt({"by": cmd.by, "reason": cmd.reason, "at": cmd.at})
        self.rt.event("halt_set", by=cmd.by, reason=cmd.reason)
        self.rt.notify("halted", f"new entries halted by {cmd.by}: {cmd.reason}", "WARN", cause=f"cmd@{cmd.at}")

    def _resume(self, cmd: Command) -> None:
        if self.on_resume is not None:
            self.on_resume()
        self.rt.store.set_halt(None)
        self.rt.event("halt_cleared", by=cmd.by, reason=cmd.reason)
        self.rt.notify("resumed", f"new entries allowed again by {cmd.by}", "INFO", cause=f"cmd@{cmd.at}")

    def _cancel_entry(self, cmd: Command) -> None:
        """Record the request first (so a restart neither re-sends nor goes to Plan B), then cancel."""
        pos = self.rt.store.load().position
        if pos is None or pos.status not in ENGINE_PHASES:
            self.rt.event("command_noop", cmd=cmd.cmd, by=cmd.by, reason="no pending entry")
            return
        pos = self.writer.update(pos.trade_key, tr.entry_cancel_requested)
        if pos is None:
            self.rt.event("command_noop", cmd=cmd.cmd, by=cmd.by, reason="entry finished meanwhile")
            return
        self.rt.event("entry_cancel_requested", pos.trade_key, by=cmd.by, reason=cmd.reason)
        self.tracker.cancel(pos, "operator")
