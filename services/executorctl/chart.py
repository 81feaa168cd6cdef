"""The report's chart: the price (from an aggregated.csv) with each trade drawn on it: entry, take-profit levels,
the stop over time (initial stop and every move), take-profit fills, stop fills and the final exit; below it the
equity curve (cumulative net PnL at each close) and its drawdown from the best so far."""
from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from services.executorctl.trade_rows import TradeRow, equity
from shared.adapters.market_files import load_bars
from shared.domain.bars import BadHeader

MARGIN_SEC = 30 * 60


def _dt(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def draw(path: Path, rows: list[TradeRow], agg: Path, symbol: str) -> None:
    """Write a PNG to `path`. Without trades, the price alone (or an empty frame saying so)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.dates as mdates
    import matplotlib.pyplot as plt

    t0 = min((r.opened_at for r in rows if r.opened_at), default=None)
    t1 = max((r.closed_at for r in rows if r.closed_at), default=None)
    bars = []
    note = ""
    try:
        bars, _bad = load_bars(agg)
    except (FileNotFoundError, BadHeader) as e:
        note = f"no price: {agg} unreadable ({type(e).__name__})"
    if t0 is not None and bars:
        bars = [b for b in bars if t0 - MARGIN_SEC <= b.ts <= (t1 or t0) + MARGIN_SEC]
    elif bars:
        bars = bars[-24 * 60:]
    fig, (ax, eq_ax) = plt.subplots(2, 1, figsize=(14, 9), dpi=100, sharex=True,
                                    gridspec_kw={"height_ratios": [3, 1]})
    if bars:
        xs = [_dt(b.ts + 60) for b in bars]  # a bar's close is at the end of its minute
        ax.fill_between(xs, [float(b.low) for b in bars], [float(b.high) for b in bars], color="#cccccc",
                        alpha=0.6, linewidth=0, label="high/low", step="pre")
        ax.plot(xs, [float(b.close) for b in bars], color="#333333", linewidth=0.8, label="close")
    for i, r in enumerate(rows):
        _draw_trade(ax, r, first=(i == 0))
    ax.set_title(f"{symbol}: {len(rows)} closed trade(s)" + (f" ({note})" if note else ""))
    ax.set_ylabel("price")
    ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=UTC))
    ax.grid(True, alpha=0.3)
    handles, _labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(loc="best", fontsize=8)
    _draw_equity(eq_ax, rows, bars)
    eq_ax.xaxis.set_major_formatter(mdates.DateFormatter("%m-%d %H:%M", tz=UTC))
    fig.autofmt_xdate()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png")
    plt.close(fig)


def _draw_trade(ax, r: TradeRow, first: bool) -> None:
    lab = (lambda s: s) if first else (lambda s: None)
    long_ = r.side == "long"
    t_open = r.opened_at or (r.fills[0].at if r.fills else r.closed_at)
    t_close = r.closed_at or t_open
    if r.avg_entry:
        ax.scatter([_dt(t_open)], [float(r.avg_entry)], marker="^" if long_ else "v", s=120, color="tab:blue",
                   zorder=5, label=lab("entry"))
        ax.annotate(r.trade_key, (_dt(t_open), float(r.avg_entry)), textcoords="offset points", xytext=(5, 10),
                    fontsize=7, color="tab:blue")
    for level, name in ((r.tp1, "TP1"), (r.tp2, "TP2")):
        if level is not None:
            ax.hlines(float(level), _dt(t_open), _dt(t_close), colors="tab:green", linestyles="dashed",
                      linewidth=0.9, label=lab(f"{name} level" if name == "TP1" else "TP2 level"))
    # The stop over time: the initial stop, then each move (every leg's moves; the tightest stop is drawn).
    if r.initial_stop is not None:
        pts = [(t_open, r.initial_stop)]
        current = r.initial_stop
        for m in sorted(r.stop_moves, key=lambda m: m["at"]):
            if m["stop"] is None:
                continue
            tighter = m["stop"] > current if long_ else m["stop"] < current
            if tighter:
                current = m["stop"]
                pts.append((m["at"], current))
        xs, ys = [], []
        for (t, s), nxt in zip(pts, pts[1:] + [(t_close, None)]):
            xs += [_dt(t), _dt(max(nxt[0], t))]
            ys += [float(s), float(s)]
        ax.plot(xs, ys, color="tab:red", linewidth=1.2, drawstyle="steps-post", label=lab("stop"))
        if len(pts) > 1:
            ax.scatter([_dt(t) for t, _ in pts[1:]], [float(s) for _, s in pts[1:]], marker="s", s=25,
                       color="tab:red", zorder=5, label=lab("stop move"))
    exits = [f for f in r.fills if f.leg != "entry"]
    tp = [f for f in exits if f.how == "tp"]
    stop = [f for f in exits if f.how == "stop"]
    flat = [f for f in exits if f.how not in ("tp", "stop")]
    if tp:
        ax.scatter([_dt(f.at) for f in tp], [float(f.price) for f in tp], marker="o", s=70, color="tab:green",
                   edgecolors="black", zorder=6, label=lab("TP fill"))
    if stop:
        ax.scatter([_dt(f.at) for f in stop], [float(f.price) for f in stop], marker="X", s=80, color="tab:red",
                   edgecolors="black", zorder=6, label=lab("stop fill"))
    if flat:
        ax.scatter([_dt(f.at) for f in flat], [float(f.price) for f in flat], marker="D", s=60, color="black",
                   zorder=6, label=lab("flatten"))
    if r.avg_exit and r.closed_at:
        ax.scatter([_dt(r.closed_at)], [float(r.avg_exit)], marker="*", s=160, color="tab:orange",
                   edgecolors="black", zorder=7, label=lab("exit (average)"))


def _draw_equity(ax, rows: list[TradeRow], bars) -> None:
    """Cumulative net PnL (a step at each close) and the drawdown below the best cumulative so far."""
    curve = equity(rows)
    ax.set_ylabel("net PnL")
    ax.grid(True, alpha=0.3)
    if not curve:
        ax.text(0.5, 0.5, "no closed trade", transform=ax.transAxes, ha="center", va="center", color="grey")
        return
    t0 = min((r.opened_at for r in rows if r.opened_at), default=curve[0][0])
    t_end = max(curve[-1][0], bars[-1].ts + 60 if bars else curve[-1][0])
    xs = [_dt(t0)] + [_dt(t) for t, _c, _d in curve] + [_dt(t_end)]
    cum = [0.0] + [float(c) for _t, c, _d in curve] + [float(curve[-1][1])]
    dd = [0.0] + [float(d) for _t, _c, d in curve] + [float(curve[-1][2])]
    ax.plot(xs, cum, drawstyle="steps-post", color="tab:purple", linewidth=1.4, label="equity (net)")
    ax.fill_between(xs, dd, 0, step="post", color="tab:red", alpha=0.3, linewidth=0, label="drawdown")
    ax.axhline(0, color="#888888", linewidth=0.6)
    worst = min(float(d) for _t, _c, d in curve)
    ax.set_title(f"equity: net {float(curve[-1][1]):+.4f}, max drawdown {worst:.4f}", fontsize=9, loc="left")
    ax.legend(loc="best", fontsize=8)
