"""The rule every command consumer applies before acting (issue 21): a command is for one trade and for a
short time. `flatten` and `cancel_entry` name the trade key they are for; every command carries an expiry by
the stack's clock. A command for another trade, without a target, or past its expiry is refused, never applied
later. Commands written before version 2 (no target, no expiry) are refused the same way."""
from __future__ import annotations

from shared.domain.messages import Command

TARGETED = frozenset({"flatten", "cancel_entry"})
COMMAND_VERSION = 2


def command_refusal(cmd: Command, trade_key: str | None, now: float) -> str | None:
    """Why `cmd` must not be applied to the trade `trade_key` (None: no trade) at `now`, or None to apply it."""
    if cmd.expires_at <= 0:
        return "expired (no expiry: written before command version 2)"
    if now > cmd.expires_at:
        return f"expired ({now - cmd.expires_at:.1f}s ago)"
    if cmd.cmd in TARGETED:
        if not cmd.trade_key:
            return "no_target"
        if cmd.trade_key != trade_key:
            return f"other_trade (for {cmd.trade_key}, current {trade_key or 'none'})"
    return None


def new_command(cmd: str, now: float, ttl_sec: float, by: str, reason: str = "", trade_key: str = "") -> Command:
    """A command written now that expires after ttl_sec of the stack's clock."""
    return Command(cmd=cmd, at=now, expires_at=now + ttl_sec, by=by, reason=reason, trade_key=trade_key,  # type: ignore[arg-type]
                   v=COMMAND_VERSION)
