"""Minute bars in the `aggregated.csv` v2 format, parsed into Decimal-valued structs."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation

import msgspec

AGG_HEADER: tuple[str, ...] = (
    "Timestamp", "Trades", "TotalQty", "AvgSize", "BuyQty", "SellQty",
    "AvgPrice", "ClosePrice", "HiPrice", "LowPrice",
)
AGG_HEADER_LINE = ",".join(AGG_HEADER)


class BadHeader(ValueError):
    """The file is not in the aggregated.csv v2 format (fail loud)."""


class BadRow(ValueError):
    """One row could not be parsed; the reason is in the message."""


class Bar(msgspec.Struct, frozen=True):
    """One minute of market data. `ts` is the bar's open time in epoch seconds (UTC)."""
    ts: int
    trades: int
    total_qty: Decimal
    buy_qty: Decimal
    sell_qty: Decimal
    avg_price: Decimal
    close: Decimal
    high: Decimal
    low: Decimal


def check_header(line: str) -> None:
    """Raise BadHeader unless `line` is exactly the v2 header."""
    got = tuple(c.strip() for c in line.strip().lstrip("\ufeff").split(","))
    if got != AGG_HEADER:
        raise BadHeader(f"aggregated.csv header mismatch: expected {AGG_HEADER_LINE!r}, got {line.strip()!r}")


def parse_ts(text: str) -> int:
    """Epoch seconds from an ISO-8601 timestamp (Z or offset, 'T' or space) or epoch s/ms."""
    s = text.strip()
    if not s:
        raise BadRow("empty timestamp")
    if s.replace(".", "", 1).isdigit():
        v = Decimal(s)
        return int(v / 1000) if v > 10_000_000_000 else int(v)
    try:
        dt = datetime.fromisoformat(s.replace("Z", "+00:00"))
    except ValueError as e:
        raise BadRow(f"bad timestamp {s!r}") from e
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return int(dt.timestamp())


def format_ts(ts: int) -> str:
    """ISO-8601 UTC with a trailing Z, the format our generator and feed writer use."""
    return datetime.fromtimestamp(ts, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _dec(field: str, text: str) -> Decimal:
    try:
        v = Decimal(text.strip())
    except InvalidOperation as e:
        raise BadRow(f"{field}: not a number: {text!r}") from e
    if not v.is_finite():
        raise BadRow(f"{field}: not finite: {text!r}")
    return v


def parse_row(line: str) -> Bar:
    """Parse one CSV data row; raise BadRow with the reason when it is malformed."""
    parts = line.strip().split(",")
    if len(parts) != len(AGG_HEADER):
        raise BadRow(f"expected {len(AGG_HEADER)} columns, got {len(parts)}")
    ts = parse_ts(parts[0])
    high, low, close = _dec("HiPrice", parts[8]), _dec("LowPrice", parts[9]), _dec("ClosePrice", parts[7])
    if low <= 0 or high < low or not (low <= close <= high):
        raise BadRow(f"inconsistent prices high={high} low={low} close={close}")
    try:
        trades = int(Decimal(parts[1].strip()))
    except InvalidOperation as e:
        raise BadRow(f"Trades: not a number: {parts[1]!r}") from e
    return Bar(
        ts=ts, trades=trades, total_qty=_dec("TotalQty", parts[2]), buy_qty=_dec("BuyQty", parts[4]),
        sell_qty=_dec("SellQty", parts[5]), avg_price=_dec("AvgPrice", parts[6]),
        close=close, high=high, low=low,
    )


def format_row(bar: Bar) -> str:
    """The CSV row for `bar` (no newline)."""
    avg_size = (bar.total_qty / bar.trades).quantize(Decimal("0.00000001")) if bar.trades else Decimal(0)
    return ",".join(str(x) for x in (
        format_ts(bar.ts), bar.trades, bar.total_qty, avg_size, bar.buy_qty, bar.sell_qty,
        bar.avg_price, bar.close, bar.high, bar.low,
    ))
