"""`executorctl replay` as a user runs it (a separate command starting its own private stack): it starts where
asked, accounts for every line of --signals, replays shorts on margin, refuses a bad --agg with a message.

Figures are never hard-coded: the product's plan decides the trades; the tests check what the report says about
them against the inputs (which line, which side, which outcome)."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from shared.domain.moments import find_moment
from shared.domain.synthetic_signals import peak_lines
from shared.adapters.market_files import write_bars
from shared.config import load_config
from shared.domain.symbol import SymbolFilters
from tests.stack import HOME


def _iso(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))


def peak(ts: float, kind: str, price, **kw) -> str:
    return json.dumps({"ts": _iso(ts), "action": "PEAK", "source": "DeltaScout", "kind": kind,
                       "price": float(price), "delta": 1.0, "vol": 2.0, "imb": 0.5, **kw})


def replay(tmp_path: Path, agg: Path, signals: Path, *args: str, timeout: float = 240,
           as_json: bool = True) -> tuple[subprocess.CompletedProcess, dict | None]:
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "services.executorctl", "replay", "--agg", str(agg), "--signals",
                          str(signals), "--dir", str(run_dir), *args, *(["--json"] if as_json else ["--plain"])],
                         cwd=HOME, capture_output=True, text=True, timeout=timeout, check=False)
    logs = "\n".join(f"== {p.name}\n{p.read_text()[-2500:]}" for p in (run_dir / "logs").glob("*.log")) \
        if (run_dir / "logs").exists() else ""
    assert res.returncode == 0, f"exit {res.returncode}\n{res.stdout[-4000:]}\n{res.stderr[-4000:]}\n{logs}"
    return res, (json.loads(res.stdout) if as_json else None)


def _filters():
    cfg = load_config({})
    return cfg, SymbolFilters(cfg.SYMBOL, "BTC", "USDC", cfg.TICK_SIZE, cfg.QTY_STEP, cfg.MIN_QTY, Decimal(9000),
                              cfg.MIN_NOTIONAL)


def test_short_file_starts_where_asked_and_accounts_for_every_line(tmp_path: Path, market_bars, moment):
    """199 bars before the signal (the old replay wanted 400 and clamped the start past it: the signal went stale);
    each line's outcome and reason in the JSON and the CSV."""
    before = 199
    lo = moment.index - before
    hi = min(len(market_bars), moment.index + moment.bars_to_tp2 + moment.bars_after_tp2 + 40)
    bars = market_bars[lo:hi]
    agg = tmp_path / "short.aggregated.csv"
    write_bars(agg, bars)
    sig = bars[before]
    t = sig.ts + 60
    lines = [
        peak(t, "long", sig.close),                          # 1 traded
        "not json",                                          # 2 rejected: bad line
        peak(t, "long", sig.close),                          # 3 rejected: duplicate of line 1
        peak(t + 120, "long", bars[before + 2].close),       # 4 ignored: a position is open
        peak(t + 180, "short", bars[before + 3].close, vol=3.0),  # 5 ignored (spot: no short; or position open)
        peak(bars[0].ts - 7200, "long", bars[0].close),      # 6 rejected: stale (older than the start)
        peak(bars[-1].ts + 3600, "long", bars[-1].close),    # 7 not fed: after the market data
    ]
    signals = tmp_path / "signals.jsonl"
    signals.write_bytes(("\n".join(lines[:3]) + "\n\n" + "\n".join(lines[3:]) + "\n").encode()
                        + b'{"ts": "\xff\xfe", "action": "PEAK"}\n')  # 9: not UTF-8, fed as is

    csv_path = tmp_path / "trades.csv"
    _res, doc = replay(tmp_path, agg, signals, "--speed", "max", "--lead", "120", "--csv", str(csv_path))
    rep = doc["replay"]
    assert rep["start"] == t - 120, rep                     # not clamped to a 400-bar history
    assert rep["history_bars"] == before + 1 - 2 and any("history" in n for n in rep["notes"]), rep
    by_line = {s["n"]: s for s in doc["signals"]}
    assert sorted(by_line) == [1, 2, 3, 5, 6, 7, 8, 9], by_line  # file line numbers (line 4 is blank)
    first = by_line[1]
    assert first["outcome"] in ("traded", "open") and first["trade_key"], first
    if first["outcome"] == "traded":
        assert first["trade_key"] in {tr["trade_key"] for tr in doc["trades"]}
    assert by_line[2]["outcome"] == "rejected" and "bad_json" in by_line[2]["reason"], by_line[2]
    assert by_line[3]["outcome"] == "rejected" and "duplicate" in by_line[3]["reason"], by_line[3]
    assert by_line[5]["outcome"] == "ignored" and by_line[5]["reason"], by_line[5]
    assert by_line[6]["outcome"] == "ignored" and by_line[6]["reason"], by_line[6]
    assert by_line[7]["outcome"] == "rejected" and "stale" in by_line[7]["reason"], by_line[7]
    assert by_line[8]["outcome"] == "not fed" and by_line[8]["offset"] == -1, by_line[8]
    assert by_line[9]["outcome"] == "rejected" and by_line[9]["reason"].startswith("bad_json"), by_line[9]
    with open(tmp_path / "trades.signals.csv", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["line"]) for r in rows] == [1, 2, 3, 5, 6, 7, 8, 9]
    assert [r["outcome"] for r in rows] == [by_line[n]["outcome"] for n in (1, 2, 3, 5, 6, 7, 8, 9)]
    assert rows[1]["text"] == "not json"


def test_short_on_margin_replays_and_prints_the_report(tmp_path: Path, market_bars):
    cfg, f = _filters()
    try:
        m = find_moment(market_bars, cfg, f, side="short")
    except LookupError as e:
        pytest.skip(str(e))
    lo = m.index - 240
    hi = min(len(market_bars), m.index + m.bars_to_tp2 + m.bars_after_tp2 + 60)
    bars = market_bars[lo:hi]
    agg = tmp_path / "short-side.aggregated.csv"
    write_bars(agg, bars)
    sig = bars[240]
    signals = tmp_path / "signals.jsonl"
    signals.write_text(peak(sig.ts + 60, "short", sig.close) + "\n")
    _res, doc = replay(tmp_path, agg, signals, "--speed", "max", "--lead", "120", "--trade-mode", "margin",
                       "--borrow-mode", "manual")
    assert doc["replay"]["trade_mode"] == "margin"
    assert doc["signals"][0]["outcome"] == "traded", doc["signals"]
    assert len(doc["trades"]) == 1, doc
    t = doc["trades"][0]
    assert t["side"] == "short" and Decimal(t["exit_qty"]) > 0 and t["source"] == "exchange", t
    # the same on spot: the short is ignored, and the printed report says why
    res, _ = replay(tmp_path, agg, signals, "--speed", "max", "--lead", "120", "--trade-mode", "spot",
                    as_json=False)
    row = next(ln for ln in res.stdout.splitlines() if ln.lstrip().startswith("1 "))
    assert "ignored" in row and "short" in row, res.stdout


@pytest.mark.parametrize("content, says", [
    (None, "no such file"),
    ("", "header"),
    ("Time,Open,High,Low,Close\n1,2,3,4,5\n", "header"),
    ("Timestamp,Trades,TotalQty,AvgSize,BuyQty,SellQty,AvgPrice,ClosePrice,HiPrice,LowPrice\n", "at least 2"),
])
def test_bad_agg_is_a_message_and_exit_2(tmp_path: Path, content, says):
    agg = tmp_path / "bad.csv"
    if content is not None:
        agg.write_text(content)
    signals = tmp_path / "s.jsonl"
    signals.write_text("")
    res = subprocess.run([sys.executable, "-m", "services.executorctl", "replay", "--agg", str(agg), "--signals",
                          str(signals), "--dir", str(tmp_path / "run")], cwd=HOME, capture_output=True, text=True,
                         timeout=60, check=False)
    assert res.returncode == 2, res
    assert "Traceback" not in res.stderr and says in res.stderr and "--agg" in res.stderr, res.stderr
    assert not (tmp_path / "run").exists()  # nothing started


def _same_input_key(doc: dict) -> tuple:
    """Everything about the trades and the signal lines that must not depend on the speed."""
    trades = [(t["trade_key"], t["side"], t["opened_at"], t["closed_at"], t["avg_entry"], t["entry_qty"],
               sorted((k, v["qty"], v["price"], v["how"]) for k, v in t["legs"].items()), t["gross_pnl"],
               t["net_pnl"], t["reason"], [(m["at"], m["leg"], m["stop"]) for m in t["stop_moves"]])
              for t in doc["trades"]]
    lines = [(s["n"], s["outcome"], s["reason"], s["trade_key"]) for s in doc["signals"]]
    return trades, lines


def test_same_trades_at_60x_and_at_the_fastest_speed(tmp_path: Path, market_bars, moment):
    """The lock-step clock: the market waits for every process, so the speed changes the wall time only. Three
    signals (the moment's long through TP1/TP2/trailing, one while it is open, one after it) at 60x and at max."""
    lo = moment.index - 240
    a = 240
    c = a + 40
    bars = market_bars[lo:min(len(market_bars), lo + c + 45)]
    agg = tmp_path / "slice.aggregated.csv"
    write_bars(agg, bars)
    signals = tmp_path / "signals.jsonl"
    signals.write_text("\n".join(peak(bars[i].ts + 60, "long", bars[i].close) for i in (a, a + 5, c)) + "\n")
    runs = {}
    for speed in ("max", "60"):
        sub = tmp_path / speed
        sub.mkdir()
        _res, runs[speed] = replay(sub, agg, signals, "--speed", speed, "--lead", "120", timeout=600)
    fast, slow = runs["max"], runs["60"]
    assert fast["trades"] and fast["signals"][0]["outcome"] == "traded", fast["signals"]
    assert _same_input_key(fast) == _same_input_key(slow)
    assert not fast["replay"]["lockstep_timeouts"] and not slow["replay"]["lockstep_timeouts"]
    assert slow["replay"]["achieved_speed"] <= 61, slow["replay"]       # paced: never ahead of 60x
    assert fast["replay"]["achieved_speed"] > 3 * slow["replay"]["achieved_speed"], fast["replay"]


def test_quiet_jumps_give_the_trades_of_every_point(tmp_path: Path, market_bars):
    """At max speed a position whose exits only wait for the market is played up to the first point that reaches
    one of its orders in one call: twelve busy hours on margin (longs and shorts) give the same trades, stop moves
    and signal outcomes as playing every point singly, in fewer settled points."""
    bars = market_bars[2000:2000 + 60 + 12 * 60]
    agg = tmp_path / "busy.aggregated.csv"
    write_bars(agg, bars)
    signals = tmp_path / "signals.jsonl"
    signals.write_text("\n".join(peak_lines(bars, 60, 45, shorts=True)) + "\n")
    runs = {}
    for name, extra in (("jumps", ()), ("every", ("--every-point",))):
        sub = tmp_path / name
        sub.mkdir()
        _res, runs[name] = replay(sub, agg, signals, "--speed", "max", "--lead", "60", "--trade-mode", "margin",
                                  *extra, timeout=600)
    jumps, every = runs["jumps"], runs["every"]
    assert len(jumps["trades"]) >= 3 and {t["side"] for t in jumps["trades"]} == {"long", "short"}, jumps["signals"]
    assert _same_input_key(jumps) == _same_input_key(every)
    pj, pe = jumps["replay"]["profile"], every["replay"]["profile"]
    assert pj["quiet_jumps"] > 0 and pe["quiet_jumps"] == 0, (pj, pe)
    assert pj["single_points"] + pj["jumps"] < (pe["single_points"] + pe["jumps"]) / 2, (pj, pe)
