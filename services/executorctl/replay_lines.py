"""The lines of `replay --signals`: read in time order, fed to DELTASCOUT_LOG at their market time, then each one
accounted for: traded (with its trade), ignored (cooldown, position open, short on spot...), rejected by ingest
(stale, duplicate, bad line) or not fed (later than the market data), always with the reason.

Matching: the replay knows the byte offset at which it wrote each line into DELTASCOUT_LOG; ingest puts that
offset on the Signal (`signals` stream) or on the Reject (`rejects` stream); the engine's decision about a signal
names its key (`signal_ignored`, `signal_aborted`, `entry_planned` events); a planned trade is followed through
the `positions` stream (ENTRY_ABORTED: the entry never filled) to the report's closed trades.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import msgspec

from services.executorctl.ctx import Ctx, fmt_ts
from shared.domain.bars import BadRow, parse_ts
from shared.domain.messages import Event, PositionEvent, Reject, Signal

DECISIONS = {"signal_ignored": "ignored", "signal_aborted": "ignored"}


class SignalLine(msgspec.Struct, kw_only=True):
    """One non-empty line of --signals and what became of it."""
    n: int                    # line number in the --signals file (1-based)
    text: str                 # for people (invalid UTF-8 shown as U+FFFD)
    raw: bytes = b""          # exactly what is fed to DELTASCOUT_LOG (ingest judges the bytes, as live)
    ts: float | None = None   # the line's `ts` (market time it is fed at); None: unreadable, fed at the start
    kind: str = ""
    offset: int = -1          # byte offset in DELTASCOUT_LOG once fed
    fed_at: float | None = None
    outcome: str = "not fed"  # traded | ignored | rejected | not fed | not handled | entry not filled | open
    reason: str = ""
    trade_key: str = ""
    signal_key: str = ""


def read_signals(path: Path) -> list[SignalLine]:
    """Every non-empty line, in time order (stable: equal times keep the file's order; a line without a readable
    `ts` comes first: ingest rejects it with its reason, as it would live)."""
    out = []
    for n, line in enumerate(path.read_bytes().split(b"\n"), start=1):
        raw = line.rstrip(b"\r")
        text = raw.decode("utf-8", errors="replace")
        if not text.strip():
            continue
        ts, kind = None, ""
        try:
            doc = msgspec.json.decode(text)
            if isinstance(doc, dict):
                ts = float(parse_ts(str(doc.get("ts", ""))))
                kind = str(doc.get("kind", ""))
        except (msgspec.DecodeError, BadRow, ValueError, ArithmeticError):
            ts = None
        out.append(SignalLine(n=n, text=text, raw=raw, ts=ts, kind=kind))
    out.sort(key=lambda s: -1.0 if s.ts is None else s.ts)
    return out


def _scan(ctx: Ctx, stream: str):
    from services.executorctl.report import _scan as scan
    return scan(ctx, stream)


def account(ctx: Ctx, lines: list[SignalLine], closed_keys: set[str], open_key: str | None) -> None:
    """Fill in each line's outcome and reason from the streams (see the module's docstring)."""
    by_offset: dict[int, Signal | Reject] = {}
    for stream in ("signals", "rejects"):
        for _id, m in _scan(ctx, stream):
            if isinstance(m, (Signal, Reject)):
                by_offset.setdefault(m.offset, m)
    decided: dict[str, tuple[str, str, str]] = {}   # signal key -> (outcome, reason, trade key)
    aborted: dict[str, str] = {}                    # trade key -> why the entry never filled
    for _id, m in _scan(ctx, "events"):
        if not isinstance(m, Event):
            continue
        sk = str(m.data.get("signal_key", ""))
        if m.kind in DECISIONS and sk:
            decided.setdefault(sk, (DECISIONS[m.kind], f"{m.kind.removeprefix('signal_')}: {m.data.get('reason')}",
                                    ""))
        elif m.kind == "entry_planned" and sk:
            decided[sk] = ("traded", "", m.trade_key)
    for _id, m in _scan(ctx, "positions"):
        if isinstance(m, PositionEvent) and m.kind == "ENTRY_ABORTED":
            aborted[m.trade_key] = str(m.detail.get("reason", ""))
    for ln in lines:
        _decide(ln, by_offset, decided, aborted, closed_keys, open_key)


def _decide(ln: SignalLine, by_offset: dict[int, Signal | Reject], decided: dict[str, tuple[str, str, str]],
            aborted: dict[str, str], closed_keys: set[str], open_key: str | None) -> None:
    if ln.offset < 0:
        ln.outcome, ln.reason = "not fed", "later than the end of the market data"
        return
    m = by_offset.get(ln.offset)
    if m is None:
        ln.outcome, ln.reason = "not handled", "ingest had not read it when the replay ended"
        return
    if isinstance(m, Reject):
        ln.outcome, ln.reason = "rejected", m.reason + (f": {m.detail}" if m.detail else "")
        return
    ln.signal_key = m.key
    outcome, reason, tk = decided.get(m.key, ("not handled", "the engine had not taken it when the replay ended", ""))
    ln.outcome, ln.reason, ln.trade_key = outcome, reason, tk
    if outcome != "traded":
        return
    if tk in aborted:
        ln.outcome, ln.reason = "entry not filled", f"entry aborted: {aborted[tk]}"
    elif tk == open_key:
        ln.outcome, ln.reason = "open", "position still open at the end of the replay"
    elif tk not in closed_keys:
        ln.outcome, ln.reason = "open", "the trade had not closed when the replay ended"


def summary(lines: list[SignalLine]) -> dict[str, int]:
    """How many lines per outcome."""
    out: dict[str, int] = {}
    for ln in lines:
        out[ln.outcome] = out.get(ln.outcome, 0) + 1
    return out


def render(ctx: Ctx, lines: list[SignalLine]) -> None:
    """The printed table: one row per line of --signals, in the file's order."""
    out = ctx.out
    counts = ", ".join(f"{v} {k}" for k, v in summary(lines).items())
    out.heading(f"signal lines ({len(lines)}: {counts})" if lines else "signal lines (none)")
    if not lines:
        return
    style = {"traded": "green", "ignored": "yellow", "rejected": "red", "not fed": "red", "not handled": "red"}
    rows = sorted(lines, key=lambda s: s.n)
    out.table(["line", "ts (UTC)", "kind", "outcome", "reason", "trade"],
              [[ln.n, fmt_ts(ln.ts) if ln.ts else "-", ln.kind or "-", ln.outcome, ln.reason or "-",
                ln.trade_key or "-"] for ln in rows],
              styles=[style.get(ln.outcome, "") for ln in rows], wrap=range(4, 6))


CSV_COLUMNS = ["line", "ts", "kind", "outcome", "reason", "trade_key", "signal_key", "log_offset", "text"]


def write_csv(path: Path, lines: list[SignalLine]) -> None:
    """One row per line of --signals, in the file's order."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for ln in sorted(lines, key=lambda s: s.n):
            w.writerow([ln.n, fmt_ts(ln.ts) if ln.ts else "", ln.kind, ln.outcome, ln.reason, ln.trade_key,
                        ln.signal_key, ln.offset if ln.offset >= 0 else "", ln.text])


def as_json(lines: list[SignalLine]) -> list[dict[str, Any]]:
    return [{k: v for k, v in msgspec.to_builtins(ln).items() if k != "raw"} for ln in sorted(lines, key=lambda s: s.n)]
