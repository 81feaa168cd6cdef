"""A sweep's results: one row per combination (its settings and files, net R, win rate, max drawdown, trades,
fees), printed, as CSV, and as a heatmap of net R over two settings (the mean over the other settings and files
when there are more, and the picture says so)."""
from __future__ import annotations

import csv
from decimal import Decimal
from pathlib import Path
from typing import Any

from services.executorctl.ctx import Out
from services.executorctl.sweep_plan import Combination, Summary

FIGURES = ["trades", "net_r", "win_rate", "max_drawdown", "fees", "net_pnl", "wall_sec", "attempt", "worker"]


def rows(combos: list[Combination], res: dict[str, Summary], failed: dict[str, str]) -> list[dict[str, Any]]:
    """One dict per combination, in the sweep's order; a failed one has status 'failed' and empty figures."""
    out = []
    for c in combos:
        row: dict[str, Any] = {"id": c.id, "market": c.agg_name, "signals": c.signals_name, **c.settings}
        s = res.get(c.id)
        if s is not None:
            row.update({f: getattr(s, f) for f in FIGURES}, status="done")
        else:
            row.update({f: "" for f in FIGURES}, status="failed" if c.id in failed else "missing")
        out.append(row)
    return out


def _columns(rs: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rs:
        cols += [k for k in r if k not in cols]
    head = ["id", "market", "signals"]
    settings = [k for k in cols if k not in head and k not in FIGURES and k != "status"]
    return head + settings + FIGURES + ["status"]


def write_csv(path: Path, rs: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    cols = _columns(rs)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in rs:
            w.writerow({c: r.get(c, "") for c in cols})


def render(out: Out, rs: list[dict[str, Any]]) -> None:
    cols = [c for c in _columns(rs) if c not in ("wall_sec", "worker", "net_pnl")]
    out.heading(f"sweep results ({sum(r['status'] == 'done' for r in rs)} of {len(rs)} combinations)")
    best = sorted((r for r in rs if r["status"] == "done"), key=lambda r: Decimal(r["net_r"]), reverse=True)
    out.table(cols, [[str(r.get(c, "")) for c in cols] for r in rs],
              styles=["red" if r["status"] != "done" else ("green" if Decimal(r["net_r"]) > 0 else "") for r in rs])
    if best:
        b = best[0]
        out.line(f"best net R: {b['net_r']} ({b['id']}: " + ", ".join(
            f"{c}={b[c]}" for c in cols if c not in FIGURES and c not in ("id", "status")) + ")", "bold")


def heatmap(path: Path, rs: list[dict[str, Any]], x: str, y: str) -> bool:
    """Net R per (x, y) cell, the mean over everything else; False when the rows do not vary over x and y."""
    done = [r for r in rs if r["status"] == "done" and x in r and y in r]
    if not done:
        return False
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    xs = _ordered(r[x] for r in done)
    ys = _ordered(r[y] for r in done)
    cells: dict[tuple[str, str], list[Decimal]] = {}
    for r in done:
        cells.setdefault((r[x], r[y]), []).append(Decimal(r["net_r"]))
    grid = [[float(sum(cells[(a, b)]) / len(cells[(a, b)])) if (a, b) in cells else float("nan") for a in xs]
            for b in ys]
    many = any(len(v) > 1 for v in cells.values())
    fig, ax = plt.subplots(figsize=(1.6 + 1.3 * len(xs), 1.4 + 0.9 * len(ys)), dpi=110)
    lim = max((abs(v) for row in grid for v in row if v == v), default=1.0) or 1.0
    im = ax.imshow(grid, cmap="RdYlGn", vmin=-lim, vmax=lim, aspect="auto", origin="lower")
    ax.set_xticks(range(len(xs)), xs)
    ax.set_yticks(range(len(ys)), ys)
    ax.set_xlabel(x)
    ax.set_ylabel(y)
    for j, row in enumerate(grid):
        for i, v in enumerate(row):
            if v == v:
                ax.text(i, j, f"{v:+.2f}", ha="center", va="center", fontsize=9)
    ax.set_title(f"net R{' (mean over the other settings)' if many else ''}", fontsize=10)
    fig.colorbar(im, ax=ax, label="net R")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return True


def _ordered(values) -> list[str]:
    """Distinct values, numerically when they all are numbers."""
    vs = list(dict.fromkeys(values))
    try:
        return sorted(vs, key=lambda v: Decimal(v))
    except ArithmeticError:
        return vs
