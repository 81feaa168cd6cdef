"""The report's row types and the equity curve: what report.py builds and chart.py draws (below both, so neither
imports the other for them)."""
from __future__ import annotations

from decimal import Decimal
from typing import Any

import msgspec

ZERO = Decimal(0)


class Fill(msgspec.Struct):
    """One execution of one of the trade's orders."""
    client_id: str
    leg: str          # entry | tp1 | tp2 | trail | flatten
    how: str          # entry | tp | stop | flatten
    side: str
    order_type: str
    qty: Decimal
    quote: Decimal
    price: Decimal
    fee_quote: Decimal
    fee_other: dict[str, Decimal]
    at: float         # market time of the execution (s)
    fee_base: Decimal = ZERO  # the part of the commission paid in the base asset (in base units)


class TradeRow(msgspec.Struct, kw_only=True):
    """One closed trade as the report shows it."""
    trade_key: str
    side: str = ""
    opened_at: float = 0.0
    closed_at: float = 0.0
    planned_entry: Decimal | None = None
    initial_stop: Decimal | None = None
    tp1: Decimal | None = None
    tp2: Decimal | None = None
    r_unit: Decimal | None = None
    sl_source: str = ""       # what set the initial stop: swing | pct (the plan's own word)
    entry_qty: Decimal = ZERO
    entry_quote: Decimal = ZERO
    avg_entry: Decimal = ZERO
    exit_qty: Decimal = ZERO
    exit_quote: Decimal = ZERO
    avg_exit: Decimal = ZERO
    legs: dict[str, dict[str, Any]] = {}
    fees_quote: Decimal = ZERO
    fees_other: dict[str, Decimal] = {}
    gross_pnl: Decimal = ZERO
    # What the trade changed the dust ledger by (bought - sold - base commissions; negative when its last leg sold
    # carried dust): the product's own coins, valued at the market (`dust_value`), not a loss.
    dust_qty: Decimal = ZERO
    dust_value: Decimal = ZERO
    net_pnl: Decimal = ZERO
    gross_r: Decimal | None = None
    net_r: Decimal | None = None
    reason: str = ""
    duration_sec: float | None = None
    stop_moves: list[dict[str, Any]] = []
    fills: list[Fill] = []
    source: str = "exchange"   # exchange: fills from the exchange's records; events: from the audit trail only
    sources: dict[str, str] = {}  # figure (plan, fills, fees, close) -> where it came from, for this trade
    notes: list[str] = []


def equity(rows: list[TradeRow]) -> list[tuple[float, Decimal, Decimal]]:
    """(close time, cumulative net PnL, drawdown from the best cumulative so far <= 0), in close order."""
    out, cum, peak = [], ZERO, ZERO
    for r in sorted(rows, key=lambda r: (r.closed_at, r.trade_key)):
        cum += r.net_pnl
        peak = max(peak, cum)
        out.append((r.closed_at, cum, cum - peak))
    return out
