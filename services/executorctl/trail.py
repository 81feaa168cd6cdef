"""`executorctl events|signals|rejects`: the audit trail and the signal streams, one readable line per entry,
optionally following new entries (`--follow`)."""
from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from services.executorctl.ctx import Ctx, decode_row, fmt_ts, human, jsonable
from shared.domain.messages import Alert, Command, Event, PositionEvent, Reject, Signal, StreamMessage
from shared.narration import describe

_STYLE = {"position_closed": "bold", "entry_filled": "bold green", "flatten_requested": "bold yellow",
          "halt_set": "bold yellow", "halt_cleared": "green", "signal_ignored": "yellow", "command_noop": "yellow"}
_BAD = ("error", "failed", "rejected", "refused", "missing", "vanished", "orphan", "gapped", "manual")


def _v(x: Any) -> str:
    return human(x)


def event_line(ev: Event) -> str:
    """One readable line: the demo's narration where it has one, else kind and data."""
    text = None
    shown = Event(service=ev.service, kind=ev.kind, at=ev.at, trade_key=ev.trade_key,
                  data={k: (human(v) if isinstance(v, (str, Decimal)) else v) for k, v in ev.data.items()})
    try:
        text = describe(shown)
    except (KeyError, TypeError):
        text = None
    body = " ".join(f"{k}={_v(v)}" for k, v in ev.data.items())
    if text is not None:
        text = text.split("] ", 1)[1] if text.startswith("[") else text
        return f"[{fmt_ts(ev.at)}] {ev.service:<15} {text}  ({ev.kind}{' ' + ev.trade_key if ev.trade_key else ''})"
    tk = f" {ev.trade_key}" if ev.trade_key else ""
    return f"[{fmt_ts(ev.at)}] {ev.service:<15} {ev.kind}{tk} {body}".rstrip()


def event_style(ev: Event) -> str:
    if ev.kind in _STYLE:
        return _STYLE[ev.kind]
    return "red" if any(w in ev.kind for w in _BAD) else ""


def message_line(m: StreamMessage) -> tuple[str, str]:
    """(text, style) of any stream message."""
    if isinstance(m, Event):
        return event_line(m), event_style(m)
    if isinstance(m, Signal):
        extra = " ".join(f"{k}={_v(getattr(m, k))}" for k in ("delta", "vol", "imb") if getattr(m, k) is not None)
        return (f"[{fmt_ts(m.ts)}] SIGNAL {m.kind:<5} @ {_v(m.price)}  {extra}  key {m.key}  "
                f"(read {fmt_ts(m.read_at, False)}, offset {m.offset})", "cyan")
    if isinstance(m, Reject):
        return (f"[{fmt_ts(m.read_at)}] REJECT {m.reason:<12} {m.detail}  offset {m.offset}  line {m.line[:160]!r}",
                "yellow")
    if isinstance(m, PositionEvent):
        return f"[{fmt_ts(m.at)}] {m.kind:<13} {m.trade_key} {jsonable(m.detail)}", ""
    if isinstance(m, Alert):
        return f"[{fmt_ts(m.at)}] {m.severity:<8} {m.check} {m.message}", "red" if m.severity != "INFO" else ""
    if isinstance(m, Command):
        target = f" for {m.trade_key}" if m.trade_key else ""
        return f"[{fmt_ts(m.at)}] COMMAND {m.cmd}{target} by {m.by} until {fmt_ts(m.expires_at)} {m.reason}", ""
    return str(m), ""


def _match(m: StreamMessage, trade: str | None, kinds: set[str] | None) -> bool:
    if trade and getattr(m, "trade_key", None) != trade:
        return False
    if kinds and isinstance(m, Event) and m.kind not in kinds:
        return False
    return True


def show(ctx: Ctx, stream: str, *, follow: bool, trade: str | None = None, kinds: set[str] | None = None,
         last: int = 50, stop: Callable[[], bool] = lambda: False) -> int:
    """Print the last `last` matching entries of `stream`; with `follow`, then every new one until Ctrl-C."""
    key = ctx.key(stream)
    out = ctx.out
    matched: list[tuple[str, StreamMessage]] = []
    # Read backwards in pages until `last` matching entries are found (filters may skip many).
    cursor = "+"
    while len(matched) < last:
        rows = ctx.r.xrevrange(key, cursor, "-", count=500)
        if not rows:
            break
        for eid, fields in rows:
            m = decode_row(fields)
            if m is not None and _match(m, trade, kinds):
                matched.append((eid.decode(), m))
                if len(matched) >= last:
                    break
        last_id = rows[-1][0].decode()
        ms, seq = (int(x) for x in last_id.split("-"))
        if ms == 0 and seq == 0:
            break
        cursor = f"{ms}-{seq - 1}" if seq > 0 else f"{ms - 1}-18446744073709551615"
        if len(rows) < 500:
            break
    matched.reverse()
    for eid, m in matched:
        _emit(ctx, eid, m)
    if not follow:
        if not matched and not out.as_json:
            out.line(f"(no entries in {key}" + (f" for trade {trade}" if trade else "") + ")")
        return 0
    newest = ctx.r.xrevrange(key, "+", "-", count=1)
    last_id = newest[0][0].decode() if newest else "0-0"
    try:
        while not stop():
            res = ctx.r.xread({key: last_id}, block=1000, count=200)
            for _s, rows in res or []:
                for eid, fields in rows:
                    last_id = eid.decode()
                    m = decode_row(fields)
                    if m is not None and _match(m, trade, kinds):
                        _emit(ctx, last_id, m)
    except KeyboardInterrupt:
        pass
    return 0


def _emit(ctx: Ctx, eid: str, m: StreamMessage) -> None:
    if ctx.out.as_json:
        import json
        print(json.dumps({"id": eid, "type": type(m).__struct_config__.tag, **jsonable(m)}), flush=True)
        return
    text, style = message_line(m)
    ctx.out.line(text, style)


class Tail:
    """A cursor on the events stream, taken before a command is sent, so its acknowledgement cannot be missed."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.key = ctx.key("events")
        rows = ctx.r.xrevrange(self.key, "+", "-", count=1)
        self.cursor = rows[0][0].decode() if rows else "0-0"

    def wait(self, accept: Callable[[Event], bool], timeout: float,
             on_event: Callable[[Event], None] | None = None) -> Event | None:
        """Read events after the cursor until one is accepted (returned) or `timeout` s pass (None)."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            res = self.ctx.r.xread({self.key: self.cursor}, block=max(1, int(min(left, 0.5) * 1000)), count=200)
            for _s, rows in res or []:
                for eid, fields in rows:
                    self.cursor = eid.decode()
                    m = decode_row(fields)
                    if not isinstance(m, Event):
                        continue
                    if on_event is not None:
                        on_event(m)
                    if accept(m):
                        return m
