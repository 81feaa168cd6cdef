"""Where a service takes an operator command: the pure rule (shared.domain.commands.command_refusal) by the
stack's clock, and a `command_refused` event for a command that must not be applied (issue 21)."""
from __future__ import annotations

from shared.domain.commands import command_refusal
from shared.domain.messages import Command
from shared.runtime import Runtime


def refused(rt: Runtime, cmd: Command, trade_key: str | None) -> bool:
    """True (and a `command_refused` event naming who wrote it and why) when `cmd` must not be applied to the
    trade `trade_key` now."""
    now = rt.clock.now()
    why = command_refusal(cmd, trade_key, now)
    if why is None:
        return False
    rt.event("command_refused", trade_key or "", level="warning", cmd=cmd.cmd, by=cmd.by, reason=why,
             target=cmd.trade_key, written_at=cmd.at, expires_at=cmd.expires_at, v=cmd.v)
    return True
