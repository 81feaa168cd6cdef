"""What the run will do, decided before it starts from the seed: where in the market data it replays, at
which market moments PEAK lines are written (moments where a long reaches TP2, found as the demo finds its
moment, plus random moments), and the sequence of chaos actions."""
from __future__ import annotations

import random
from decimal import Decimal
from typing import Sequence

import msgspec

from shared.config import Config
from shared.domain.bars import Bar
from shared.domain.moments import bars_to_tp2, plan_at
from shared.domain.symbol import SymbolFilters

FAULT_KINDS = ("after_accept_5xx", "timeout", "http_429", "err_1021", "transient_2013")
FAULT_PATHS = ("", "/api/v3/order", "/api/v3/orderList/oco", "/api/v3/order/cancelReplace", "/api/v3/openOrders")
CORRUPTIONS = ("garbage_lines", "torn_line", "truncate_log", "rotate_log", "bad_csv_rows")


class PlannedSignal(msgspec.Struct, frozen=True):
    bar_index: int          # the signal bar; the line is written when that bar has closed
    at_ts: int              # market time (epoch s) at which to write it = close of the signal bar
    kind: str
    price: Decimal
    why: str                # "tp2_moment" | "random"


class Action(msgspec.Struct, frozen=True):
    at: float               # wall seconds after the chaos phase started
    kind: str               # "kill" | "fault" | "corrupt"
    target: str             # service, fault kind, or corruption kind
    param: dict = {}


def tp2_moments(bars: Sequence[Bar], cfg: Config, f: SymbolFilters, lo: int, hi: int,
                horizon: int = 120) -> list[int]:
    """Bar indexes in [lo, hi) where a long signal at the bar's close reaches TP2 before its stop (simulated
    with the product's own plan: shared/domain/moments.py)."""
    out = []
    for i in range(max(lo, cfg.SWING_MINS), min(hi, len(bars) - 2)):
        plan = plan_at(bars, i, cfg, f)
        if plan is not None and bars_to_tp2(bars, i, plan, horizon) is not None:
            out.append(i)
    return out


def choose_window(bars: Sequence[Bar], cfg: Config, f: SymbolFilters, rng: random.Random, n_bars: int,
                  history: int = 400) -> tuple[int, list[int]]:
    """(first replayed bar, TP2 moments inside the window): a window rich in moments, picked by the seed
    among the best few."""
    stride = max(1, n_bars // 2)
    starts = list(range(history + 1, max(history + 2, len(bars) - n_bars - 200), stride))
    # Cheap pre-scan on a sample of windows; the exact scan only on the candidates.
    sample = starts if len(starts) <= 40 else sorted(rng.sample(starts, 40))
    scored = []
    for s in sample:
        m = tp2_moments(bars, cfg, f, s + 2, s + n_bars - 20)
        scored.append((len(m), s, m))
    scored.sort(key=lambda t: -t[0])
    best = scored[:3]
    _n, start, moments = best[rng.randrange(len(best))]
    return start, moments


def plan_signals(bars: Sequence[Bar], start: int, moments: list[int], n_bars: int, rng: random.Random,
                 random_every_bars: float, shorts: float = 0.1,
                 min_gap: int = 8) -> list[PlannedSignal]:
    """The PEAK lines of the run: each TP2 moment, plus random moments about every `random_every_bars`."""
    used: set[int] = set()
    out: list[PlannedSignal] = []
    last = -10**9
    for i in moments:  # consecutive moments are one opportunity: keep one every `min_gap` bars
        if i - last < min_gap:
            continue
        last = i
        if i not in used and i + 1 < len(bars):
            used.add(i)
            out.append(PlannedSignal(i, bars[i + 1].ts, "long", bars[i].close, "tp2_moment"))
    n_random = int(n_bars / random_every_bars)
    for _ in range(n_random):
        i = rng.randrange(start + 2, start + n_bars - 5)
        if i in used or i + 1 >= len(bars):
            continue
        used.add(i)
        kind = "short" if rng.random() < shorts else "long"
        out.append(PlannedSignal(i, bars[i + 1].ts, kind, bars[i].close, "random"))
    out.sort(key=lambda p: p.at_ts)
    return out


def plan_actions(rng: random.Random, duration: float, mean_gap: float, services: Sequence[str],
                 weights: tuple[float, float, float] = (0.45, 0.30, 0.25)) -> list[Action]:
    """The chaos actions, at exponential gaps (mean `mean_gap` s): a kill -9 + restart of a process, an
    exchange fault, or a corrupted input. First every process, every fault kind and every corruption once
    (in a seeded order), then random ones."""
    must: list[tuple[str, str]] = ([("kill", s) for s in services] + [("fault", k) for k in FAULT_KINDS]
                                   + [("corrupt", c) for c in CORRUPTIONS])
    rng.shuffle(must)
    out: list[Action] = []
    t = 1.0 + rng.expovariate(1 / mean_gap)
    while t < duration or must:
        if must:
            kind, target = must.pop(0)
        else:
            x = rng.random()
            kind = "kill" if x < weights[0] else "fault" if x < weights[0] + weights[1] else "corrupt"
            target = rng.choice(list(services) if kind == "kill" else FAULT_KINDS if kind == "fault" else CORRUPTIONS)
        if kind == "kill":
            out.append(Action(t, "kill", target, {"down_sec": round(rng.uniform(0.1, 1.5), 2)}))
        elif kind == "fault":
            body: dict = {target: rng.randint(1, 2)}
            path = rng.choice(FAULT_PATHS)
            if path:
                body["path"] = path
            if target == "http_429":
                body["retry_after"] = rng.choice([1, 2])
            if target == "timeout":
                body["timeout_ms"] = rng.choice([2500, 3000])
            out.append(Action(t, "fault", target, body))
        else:
            out.append(Action(t, "corrupt", target, {"n": rng.randint(1, 4)}))
        t += rng.expovariate(1 / mean_gap)
    return out
