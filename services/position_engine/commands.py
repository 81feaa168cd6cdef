"""Operator commands of the entry phase: halt, resume, cancel_entry (flatten belongs to the exit manager)."""
from __future__ import annotations

import msgspec

from services.position_engine.tracker import EntryTracker
from services.position_engine.writer import PositionWriter
from shared.domain import transitions as tr
from shared.domain.messages import Command
from shared.domain.position import ENGINE_PHASES
from shared.runtime import Runtime


class CommandHandler:
    """Applies one operator command and records it."""

    def __init__(self, rt: Runtime, writer: PositionWriter, tracker: EntryTracker) -> None:
        self.rt, self.cfg, self.writer, self.tracker = rt, rt.cfg, writer, tracker

    def on_command(self, cmd: Command) -> None:
        """Dispatch by name; commands of other services are ignored."""
        fn = {"halt": self._halt, "resume": self._resume, "cancel_entry": self._cancel_entry}.get(cmd.cmd)
        if fn is not None:
            fn(cmd)

    def _halt(self, cmd: Command) -> None:
        self.rt.r.set(self.cfg.key("halt"), msgspec.json.encode({"by": cmd.by, "reason": cmd.reason, "at": cmd.at}))
        self.rt.event("halt_set", by=cmd.by, reason=cmd.reason)
        self.rt.notify("halted", f"new entries halted by {cmd.by}: {cmd.reason}", "WARN", cause=f"cmd@{cmd.at}")

    def _resume(self, cmd: Command) -> None:
        self.rt.r.delete(self.cfg.key("halt"))
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
