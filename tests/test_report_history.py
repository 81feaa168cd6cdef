"""The report over a history longer than one page of the exchange's records (issue 25): every trade's figures
come from its own orders, checked against the paper exchange's own records; with the audit trail trimmed, the
report says per trade what it could not know, and never mixes sources within a trade."""
from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

from shared.adapters.market_files import write_bars
from shared.domain.order_ids import trade_key_of
from shared.domain.synthetic_signals import peak_lines
from tests.stack import HOME, Stack
from tests.test_executorctl import ctl_json, open_position, stack  # noqa: F401 - the fixture


def _paper_fees(run_dir: Path, quote: str) -> tuple[dict[str, Decimal], int]:
    """Per trade key, the commissions the paper exchange recorded (its state file), in the quote asset (a base
    commission at its execution's price); and how many orders it holds."""
    snap = json.loads((run_dir / "paper" / "paper.json").read_text())["engine"]
    owner = {int(oid): trade_key_of(o["client_order_id"]) for oid, o in snap["orders"].items()}
    fees: dict[str, Decimal] = {}
    for t in snap["trades"]:
        tk = owner.get(int(t["order_id"]))
        c = Decimal(str(t["commission"]))
        fee = c if t["commission_asset"] == quote else c * Decimal(str(t["price"]))
        fees[tk] = fees.get(tk, Decimal(0)) + fee
    return fees, len(snap["orders"])


def test_more_orders_than_a_page_every_trade_from_its_own_orders(tmp_path: Path, market_bars):
    """Margin, PAPER_PAGE_MAX=2: the exchange answers at most 2 orders per allOrders page (Binance: 500), so the
    run holds many pages of orders; every closed trade still gets its fills and fees, equal to the exchange's own
    records, and says where they came from."""
    lo = len(market_bars) // 4   # a day from the first days of the file (the moment is near its end)
    bars = market_bars[lo:lo + 240 + 24 * 60]
    agg, signals = tmp_path / "slice.aggregated.csv", tmp_path / "signals.jsonl"
    write_bars(agg, bars)
    signals.write_text("\n".join(peak_lines(bars, 240, 30)) + "\n")
    run_dir = tmp_path / "run"
    res = subprocess.run([sys.executable, "-m", "services.executorctl", "replay", "--agg", str(agg), "--signals",
                          str(signals), "--speed", "max", "--start", str(bars[240].ts), "--dir", str(run_dir),
                          "--trade-mode", "margin", "--borrow-mode", "manual", "--set", "PAPER_PAGE_MAX=2",
                          "--fee-rate", "0.00075", "--json"],
                         cwd=HOME, capture_output=True, text=True, timeout=600, check=False)
    assert res.returncode == 0, f"{res.stdout[-3000:]}\n{res.stderr[-3000:]}"
    doc = json.loads(res.stdout)
    trades = doc["trades"]
    fees, n_orders = _paper_fees(run_dir, "USDC")
    assert len(trades) >= 2 and n_orders > 2 * 2, (len(trades), n_orders)   # several pages of orders
    assert doc["replay"]["market"]["PAPER_FEE_RATE"] == "0.00075", doc["replay"]["market"]
    for t in trades:
        assert t["source"] == "exchange", t
        assert t["sources"]["fees"].startswith("exchange") and "page(s)" in t["sources"]["fills"], t["sources"]
        assert Decimal(t["entry_qty"]) > 0 and Decimal(t["exit_qty"]) > 0, t
        assert abs(Decimal(t["fees_quote"]) - fees[t["trade_key"]]) < Decimal("1e-8"), (t, fees)
    assert Decimal(doc["totals"]["fees_quote"]) > 0
    res_kb = doc["replay"]["resources"]["rss_peak_kb"]
    assert res_kb["paper_exchange"] > 0 and doc["replay"]["resources"]["redis_used_memory_peak"] > 0


def test_trimmed_audit_trail_each_trade_says_what_is_unknown(stack: Stack, market_bars, moment):  # noqa: F811
    """A live stack whose events stream lost its oldest entries (STREAM_MAXLEN): the trade still gets its fills and
    fees from the exchange (found by its own client ids) and says its plan is unknown; with the exchange away as
    well, its figures come wholly from what is left of the trail, and it says which ones are missing."""
    s = stack
    tk = open_position(s, market_bars, moment)
    s.admin("/advance", {"points": 4})
    flat = ctl_json(s, "flatten", "--reason", "test")
    assert flat is not None
    s.wait(lambda: s.state().position is None and s.state().last_closed is not None, 30, "closed")
    full = ctl_json(s, "report")["trades"][0]
    assert full["trade_key"] == tk and full["source"] == "exchange"
    s.r.xtrim(f"{s.prefix}events", maxlen=2)   # what trimming at STREAM_MAXLEN leaves of a long history
    t = ctl_json(s, "report")["trades"][0]
    assert t["trade_key"] == tk and t["source"] == "exchange", t
    assert t["fees_quote"] == full["fees_quote"] and t["exit_qty"] == full["exit_qty"], (t, full)
    assert t["sources"]["plan"].startswith("unknown") and any("entry_planned not in the audit trail" in n
                                                              for n in t["notes"]), t
    dead = {**s.env, "BINANCE_BASE_URL": "http://127.0.0.1:9", "BINANCE_TIMEOUT_SEC": "2"}
    res = subprocess.run([sys.executable, "-m", "services.executorctl", "report", "--json"], cwd=HOME, env=dead,
                         capture_output=True, text=True, timeout=60, check=False)
    t2 = json.loads(res.stdout)["trades"][0]
    assert t2["source"] == "events" and t2["sources"]["fees"].startswith("unknown"), t2
    assert Decimal(t2["fees_quote"]) == 0 and Decimal(t2["entry_qty"]) == 0, t2   # nothing taken from elsewhere
    assert any("not read" in n for n in t2["notes"]) and any("entry_filled" in n for n in t2["notes"]), t2["notes"]
