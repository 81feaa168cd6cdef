"""What a sweep is, without I/O: the grid of settings (`--grid NAME=v1,v2`) crossed with the signal and market
files, one combination per replay, each with a stable id (so a sweep run again with the same arguments is the
same sweep, and finished combinations are not run again), and the figures kept of each replay.
"""
from __future__ import annotations

import hashlib
import itertools
from decimal import Decimal
from typing import Any

import msgspec

from services.executorctl.ctx import CtlError
from services.executorctl.replay_settings import check_name


class Combination(msgspec.Struct, frozen=True, kw_only=True):
    """One replay of a sweep: the files (by content hash, stored in Redis), the settings, the replay options."""
    id: str
    agg_sha: str
    agg_name: str
    signals_sha: str
    signals_name: str
    settings: dict[str, str]
    options: list[str]          # replay command-line options shared by every combination (--start, --trade-mode...)


class Summary(msgspec.Struct, kw_only=True):
    """The figures of one finished combination (a row of the table and the CSV)."""
    id: str
    trades: int
    net_r: str
    win_rate: str               # '' when there was no trade
    max_drawdown: str           # quote, <= 0
    fees: str                   # quote
    net_pnl: str
    wall_sec: float
    worker: str
    attempt: int
    outcome: str


def parse_grid(items: list[str] | None) -> dict[str, list[str]]:
    """`--grid NAME=v1,v2,...`; values that themselves hold commas (TP_R_LIST=1,2:1.5,3) are separated by ':'."""
    grid: dict[str, list[str]] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        name = name.strip().upper()
        if not sep or not name or not raw.strip():
            raise CtlError(f"--grid {item!r}: expected NAME=v1,v2 (or NAME=a,b:c,d when a value holds commas)")
        check_name(name)
        values = [v.strip() for v in raw.split(":" if ":" in raw else ",")]
        if any(not v for v in values) or len(set(values)) != len(values):
            raise CtlError(f"--grid {item!r}: empty or repeated value")
        if name in grid:
            raise CtlError(f"--grid {name} given twice")
        grid[name] = values
    return grid


def combo_id(agg_sha: str, signals_sha: str, settings: dict[str, str], options: list[str]) -> str:
    doc = msgspec.json.encode({"agg": agg_sha, "signals": signals_sha, "settings": dict(sorted(settings.items())),
                               "options": options})
    return hashlib.sha256(doc).hexdigest()[:12]


def combinations(files: list[tuple[tuple[str, str], tuple[str, str]]], grid: dict[str, list[str]],
                 fixed: dict[str, str], options: list[str]) -> list[Combination]:
    """Every (market, signals) pair crossed with every point of the grid; `fixed` settings apply to all."""
    names = sorted(grid)
    out = []
    for (agg_sha, agg_name), (sig_sha, sig_name) in files:
        for values in itertools.product(*(grid[n] for n in names)):
            settings = {**fixed, **dict(zip(names, values))}
            out.append(Combination(id=combo_id(agg_sha, sig_sha, settings, options), agg_sha=agg_sha,
                                   agg_name=agg_name, signals_sha=sig_sha, signals_name=sig_name,
                                   settings=settings, options=options))
    return out


def sweep_id(combos: list[Combination]) -> str:
    """The same arguments give the same sweep (resume)."""
    return hashlib.sha256(",".join(sorted(c.id for c in combos)).encode()).hexdigest()[:10]


def summarize(doc: dict[str, Any], cid: str, worker: str, attempt: int) -> Summary:
    """The figures of a replay's JSON report."""
    tot = doc.get("totals", {})
    wr = tot.get("win_rate")
    rp = doc.get("replay", {})
    return Summary(id=cid, trades=int(tot.get("trades", 0)), net_r=str(Decimal(str(tot.get("net_r", "0")))),
                   win_rate="" if wr is None else f"{Decimal(str(wr)):.4f}",
                   max_drawdown=str(tot.get("max_drawdown", "0")), fees=str(tot.get("fees_quote", "0")),
                   net_pnl=str(tot.get("net_pnl", "0")), wall_sec=float(rp.get("wall_sec", 0.0)), worker=worker,
                   attempt=attempt, outcome=str(rp.get("outcome", "")))


def time_left(done_secs: list[float], remaining: int, running: int) -> float | None:
    """Seconds left: the mean duration of the finished ones times what is left, over the workers busy."""
    if not done_secs or remaining <= 0:
        return 0.0 if remaining <= 0 else None
    return sum(done_secs) / len(done_secs) * remaining / max(1, running)
