"""`executorctl report`: every closed trade, rebuilt from the `positions` stream (CLOSED) and the audit trail
(entry_planned, entry_filled, stop_move, leg_settled, position_closed), with the exchange's own records of each
of the trade's orders, fetched by the trade's own orders (trade_orders.py: its entry's client id, then allOrders
paged from there; quantities, prices, fees from myTrades). Totals, win rate, CSV, chart.

The state keeps only the last closed trade, so the streams are the history. A trade's figures come wholly from
the exchange or wholly from the audit trail, never mixed; each row says where each figure came from (`sources`).
A trade whose events were trimmed (STREAM_MAXLEN on a live stack; a replay's private stack never trims) still
gets its fills and fees from the exchange, and its notes say what is unknown (the plan).
"""
from __future__ import annotations

import csv
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import msgspec

from services.executorctl import trade_orders
from services.executorctl.ctx import CtlError, Ctx, decode_row, fmt_dur, fmt_ts, human, jsonable
from services.executorctl.trade_rows import ZERO, Fill, TradeRow, equity
from shared.adapters.binance_rest import BinanceError
from shared.domain.bars import parse_ts
from shared.domain.dust import fee_case
from shared.domain.messages import Event, PositionEvent
from shared.domain.order_ids import LEG_CODES
from shared.domain.orders import Order, Trade
from shared.domain.symbol import split_symbol

_CODE_LEG = {v: k for k, v in LEG_CODES.items()}
# Which exit leg an order belongs to, and how it exits, from its client id's leg code.
_EXIT_OF = {"p1": ("tp1", "tp"), "s1": ("tp1", "stop"), "p2": ("tp2", "tp"), "s2": ("tp2", "stop"),
            "tr": ("trail", "stop"), "fl": ("flatten", "flatten")}
EVENT_KINDS = {"entry_planned", "entry_filled", "stop_move", "leg_settled", "leg_placed", "position_closed",
               "flatten_requested", "flatten_filled", "break_even_done", "trailing_on", "manual_close_detected"}
Q4 = Decimal("0.0001")


# ---- reading the streams ------------------------------------------------------------------------------

def _scan(ctx: Ctx, stream: str) -> Iterator[tuple[str, Any]]:
    key = ctx.key(stream)
    start = "-"
    while True:
        rows = ctx.r.xrange(key, start, "+", count=2000)
        for eid, fields in rows:
            m = decode_row(fields)
            if m is not None:
                yield eid.decode(), m
        if len(rows) < 2000:
            return
        start = "(" + rows[-1][0].decode()


def _collect(ctx: Ctx) -> tuple[dict[str, dict[str, list[Event]]], dict[str, PositionEvent]]:
    events: dict[str, dict[str, list[Event]]] = {}
    for _id, m in _scan(ctx, "events"):
        if isinstance(m, Event) and m.trade_key and m.kind in EVENT_KINDS:
            events.setdefault(m.trade_key, {}).setdefault(m.kind, []).append(m)
    closed: dict[str, PositionEvent] = {}
    for _id, m in _scan(ctx, "positions"):
        if isinstance(m, PositionEvent) and m.kind == "CLOSED":
            closed[m.trade_key] = m
    return events, closed


def _d(v: Any) -> Decimal | None:
    if v is None or v == "":
        return None
    try:
        return Decimal(str(v))
    except ArithmeticError:
        return None


# ---- the exchange's records ------------------------------------------------------------------------------

class Records(msgspec.Struct):
    """One trade's executions on the exchange and where they came from ('' fills: not read or not found)."""
    fills: list[Fill]
    how: str
    error: str = ""


def _fills(client, symbol: str, orders: list[Order], base: str, quote: str) -> list[Fill]:
    """The executions of the trade's orders (myTrades per executed order, for the commissions). Commissions in
    the base asset are valued at the execution's price."""
    out: list[Fill] = []
    for o in orders:
        if o.executed_qty <= 0:
            continue
        code = o.client_order_id.rsplit("-", 2)[1]
        leg, how = ("entry", "entry") if code == "en" else _EXIT_OF.get(code, (_CODE_LEG.get(code, code), "other"))
        trades: list[Trade] = trade_orders.order_trades(client, symbol, o)
        if not trades:  # no per-execution records: one fill from the order itself, no fee known
            price = o.cummulative_quote_qty / o.executed_qty
            out.append(Fill(o.client_order_id, leg, how, o.side, o.type, o.executed_qty, o.cummulative_quote_qty,
                            price, ZERO, {}, (o.update_time or o.time) / 1000))
            continue
        for t in trades:
            fee_q, fee_b, other = ZERO, ZERO, {}
            if t.commission_asset == quote:
                fee_q = t.commission
            elif t.commission_asset == base:
                fee_q, fee_b = t.commission * t.price, t.commission
            elif t.commission > 0:
                other[t.commission_asset] = t.commission
            out.append(Fill(o.client_order_id, leg, how, o.side, o.type, t.qty, t.quote_qty, t.price, fee_q, other,
                            t.time / 1000, fee_b))
    return out


def _records(ctx: Ctx, span: trade_orders.Span, base: str, quote: str) -> Records:
    """The trade's own orders and executions (trade_orders.py: by its orders, never a window it can fall out of)."""
    try:
        client = ctx.client()
        found = trade_orders.trade_orders(client, ctx.cfg.SYMBOL, span)
        fills = _fills(client, ctx.cfg.SYMBOL, found.orders, base, quote)
    except (BinanceError, OSError, msgspec.DecodeError) as e:   # said per trade; its figures from the trail
        return Records([], "", f"{type(e).__name__}: {e}"[:200])
    return Records(fills, f"{len(found.orders)} order(s) of the trade: {found.how}; myTrades per executed order")


def _span(tk: str, evs: dict[str, list[Event]], closed: PositionEvent | None) -> trade_orders.Span:
    """The trade's first known time and close time (market ms) from what the streams still hold."""
    times = [e.at for kind in ("entry_planned", "entry_filled") for e in evs.get(kind, [])]
    pc = _first(evs, "position_closed")
    end = pc.at if pc is not None else (closed.at if closed is not None else 0.0)
    first = min(times) if times else end
    return trade_orders.Span(tk, int(first * 1000), int(end * 1000))


# ---- building the rows ------------------------------------------------------------------------------------

def build(ctx: Ctx, since: float | None = None, use_exchange: bool = True) -> list[TradeRow]:
    """Every closed trade (closed at or after `since`, market time), oldest first; each with its own exchange
    records (`trade_orders.py`), or wholly from the audit trail when those cannot be had, and the row says which."""
    events, closed = _collect(ctx)
    keys = set(closed) | {tk for tk, kinds in events.items() if "position_closed" in kinds}
    st = ctx.state()
    base, quote = _assets(ctx)
    rows = []
    unreachable = ""
    for tk in keys:
        span = _span(tk, events.get(tk, {}), closed.get(tk))
        if since is not None and span.closed_ms / 1000 < since:
            continue
        if not use_exchange:
            rec = Records([], "", "not read (the exchange was not asked)")
        elif unreachable:
            rec = Records([], "", unreachable)
        else:
            rec = _records(ctx, span, base, quote)
            if rec.error.startswith(("Unreachable", "RateLimited")):
                unreachable = rec.error   # one wait is enough: the other trades say the same without asking
        row = _row(tk, events.get(tk, {}), closed.get(tk), rec, st)
        rows.append(row)
    rows.sort(key=lambda r: (r.closed_at, r.trade_key))
    return rows


def _assets(ctx: Ctx) -> tuple[str, str]:
    parts = split_symbol(ctx.cfg.SYMBOL)
    return (parts[0], parts[1]) if parts else (ctx.cfg.SYMBOL, "")


def _first(evs: dict[str, list[Event]], kind: str) -> Event | None:
    lst = evs.get(kind)
    return lst[0] if lst else None


def _row(tk: str, evs: dict[str, list[Event]], closed: PositionEvent | None, rec: Records, st) -> TradeRow:
    fills = _whole(rec)
    row = TradeRow(trade_key=tk, legs={}, fees_other={}, stop_moves=[], fills=fills, notes=[], sources={})
    filled, pc = _first(evs, "entry_filled"), _first(evs, "position_closed")
    _sources(row, rec, evs, closed)
    lc = st.last_closed if st.last_closed is not None and st.last_closed.trade_key == tk else None
    _row_header(row, tk, evs, closed, filled, pc, lc)
    sign = 1 if row.side == "long" else -1
    if fills:
        _row_from_fills(row, fills, filled, sign)
    else:
        _row_from_audit(row, evs, rec, pc, lc, sign)
    _row_result(row, pc)
    return row


def _row_header(row: TradeRow, tk: str, evs: dict[str, list[Event]], closed: PositionEvent | None,
                filled: Event | None, pc: Event | None, lc) -> None:
    """The plan, side, times, reason and stop moves of the trade, from the audit trail."""
    plan = _first(evs, "entry_planned")
    if plan is not None:
        d = plan.data
        row.side = str(d.get("side", ""))
        row.planned_entry, row.initial_stop = _d(d.get("entry")), _d(d.get("sl"))
        row.tp1, row.tp2, row.r_unit = _d(d.get("tp1")), _d(d.get("tp2")), _d(d.get("r"))
        row.sl_source = str(d.get("sl_source") or "")
        row.opened_at = plan.at
    else:
        row.notes.append("entry_planned not in the audit trail (trimmed or adopted): plan, stop, R unknown")
    if filled is not None:
        row.opened_at = filled.at
        row.side = row.side or str(filled.data.get("side", ""))
    if lc is not None:
        row.side = row.side or lc.side
        row.opened_at = row.opened_at or lc.opened_at
    row.side = row.side or ("long" if "-L-" in tk else "short")
    row.closed_at = pc.at if pc is not None else (closed.at if closed is not None else 0.0)
    row.reason = str((pc.data.get("reason") if pc is not None else None)
                     or (closed.detail.get("reason") if closed is not None else "") or "")
    row.duration_sec = (row.closed_at - row.opened_at) if row.opened_at and row.closed_at else None
    row.stop_moves = [{"at": e.at, "leg": e.data.get("leg"), "stop": _d(e.data.get("stop")), "why": e.data.get("why")}
                      for e in evs.get("stop_move", [])]


def _row_from_fills(row: TradeRow, fills: list, filled: Event | None, sign: int) -> None:
    """Quantities, prices, fees and P&L from the exchange's own fills of the trade."""
    entry = [f for f in fills if f.leg == "entry"]
    exits = [f for f in fills if f.leg != "entry"]
    row.entry_qty = sum((f.qty for f in entry), ZERO)
    row.entry_quote = sum((f.quote for f in entry), ZERO)
    row.exit_qty = sum((f.qty for f in exits), ZERO)
    row.exit_quote = sum((f.quote for f in exits), ZERO)
    row.fees_quote = sum((f.fee_quote for f in fills), ZERO)
    for f in fills:
        for a, v in f.fee_other.items():
            row.fees_other[a] = row.fees_other.get(a, ZERO) + v
    _row_legs(row, exits)
    row.avg_entry = row.entry_quote / row.entry_qty if row.entry_qty else ZERO
    if filled is not None and _d(filled.data.get("avg_entry")):
        row.avg_entry = _d(filled.data.get("avg_entry"))  # the product's own average (same fills)
    row.avg_exit = row.exit_quote / row.exit_qty if row.exit_qty else ZERO
    row.gross_pnl = (sign * (row.exit_quote - row.avg_entry * row.exit_qty)).quantize(Q4)
    row.dust_qty = (sum((f.qty for f in fills if f.side == "BUY"), ZERO)
                    - sum((f.qty for f in fills if f.side == "SELL"), ZERO)
                    - sum((f.fee_base for f in fills), ZERO))


def _row_legs(row: TradeRow, exits: list) -> None:
    """Each exit leg's quantity, average price and how it filled, in the order of its fills."""
    for f in sorted(exits, key=lambda f: f.at):
        lg = row.legs.setdefault(f.leg, {"qty": ZERO, "quote": ZERO, "how": [], "at": f.at})
        lg["qty"] += f.qty
        lg["quote"] += f.quote
        lg["at"] = f.at
        if f.how not in lg["how"]:
            lg["how"].append(f.how)
    for lg in row.legs.values():
        lg["price"] = (lg["quote"] / lg["qty"]).quantize(Decimal("0.01")) if lg["qty"] else ZERO
        lg["how"] = "+".join(lg["how"])


def _row_from_audit(row: TradeRow, evs: dict[str, list[Event]], rec: Records, pc: Event | None, lc,
                    sign: int) -> None:
    """No whole record of the trade's fills: the whole trade from the audit trail, with the reason noted."""
    row.source = "events"
    if rec.error:
        row.notes.append(f"exchange records not read ({rec.error}): figures from the audit trail")
    elif rec.fills:
        row.notes.append(f"exchange records incomplete ({_legs_found(rec.fills)}): the whole trade from the "
                         "audit trail, never its entry from one source and its exits from another")
    _from_events(row, evs, pc, lc, sign)
    row.dust_qty = (_d(pc.data.get("dust_delta", pc.data.get("dust"))) if pc is not None else None) or ZERO


def _row_result(row: TradeRow, pc: Event | None) -> None:
    """Net P&L and R, and the averages rounded for the table."""
    row.net_pnl = (row.gross_pnl - row.fees_quote).quantize(Q4)
    risk = (row.r_unit or ZERO) * row.exit_qty
    if risk > 0:
        row.gross_r = (row.gross_pnl / risk).quantize(Decimal("0.001"))
        row.net_r = (row.net_pnl / risk).quantize(Decimal("0.001"))
    elif pc is not None and _d(pc.data.get("r")) is not None:
        row.gross_r = _d(pc.data.get("r"))
    row.avg_entry = row.avg_entry.quantize(Decimal("0.01")) if row.avg_entry else ZERO
    row.avg_exit = row.avg_exit.quantize(Decimal("0.01")) if row.avg_exit else ZERO


def _from_events(row: TradeRow, evs: dict[str, list[Event]], pc: Event | None, lc, sign: int) -> None:
    """Figures from the audit trail when the exchange's records are not available (no fees then)."""
    if pc is not None:
        d = pc.data
        row.exit_qty = _d(d.get("qty")) or ZERO
        row.avg_entry = _d(d.get("avg_entry")) or ZERO
        row.avg_exit = _d(d.get("avg_exit")) or ZERO
        row.gross_pnl = _d(d.get("pnl")) or ZERO
    elif lc is not None:
        row.exit_qty, row.avg_entry, row.avg_exit, row.gross_pnl = lc.qty, lc.avg_entry, lc.avg_exit, lc.pnl_quote
    row.exit_quote = row.avg_exit * row.exit_qty
    filled = _first(evs, "entry_filled")
    if filled is not None:
        row.entry_qty = _d(filled.data.get("qty")) or ZERO
        row.entry_quote = row.entry_qty * row.avg_entry
    for e in evs.get("leg_settled", []):
        q = _d(e.data.get("filled")) or ZERO
        if q <= 0:
            continue
        lg = row.legs.setdefault(str(e.data.get("leg")), {"qty": ZERO, "quote": ZERO, "how": "", "at": e.at})
        lg["qty"] += q
        lg["quote"] += _d(e.data.get("quote")) or ZERO
        lg["how"] = str(e.data.get("reason") or lg["how"])
        lg["at"] = e.at
    for e in evs.get("flatten_filled", []):
        q = _d(e.data.get("qty")) or ZERO
        if q > 0:
            lg = row.legs.setdefault("flatten", {"qty": ZERO, "quote": ZERO, "how": "flatten", "at": e.at})
            lg["qty"] += q
            lg["quote"] += _d(e.data.get("quote")) or ZERO
    for lg in row.legs.values():
        lg["price"] = (lg["quote"] / lg["qty"]).quantize(Decimal("0.01")) if lg["qty"] and lg["quote"] else ZERO
    missing = [k for k in ("entry_filled", "position_closed") if not evs.get(k)]
    row.notes.append("no exchange records of this trade's orders: fees unknown (0)"
                     + (f"; {', '.join(missing)} not in the audit trail (trimmed?): those figures are 0"
                        if missing else ""))


def _whole(rec: Records) -> list[Fill]:
    """The exchange's fills only when they hold the entry and the exits: a trade is never half from the exchange
    and half from the audit trail."""
    entry = any(f.leg == "entry" for f in rec.fills)
    exits = any(f.leg != "entry" for f in rec.fills)
    return rec.fills if entry and exits else []


def _legs_found(fills: list[Fill]) -> str:
    e = sum(1 for f in fills if f.leg == "entry")
    return f"{e} entry execution(s), {len(fills) - e} exit execution(s)"


def _sources(row: TradeRow, rec: Records, evs: dict[str, list[Event]], closed: PositionEvent | None) -> None:
    """Per figure, where it came from (printed under the table, a column of the CSV, a field of the JSON)."""
    whole = bool(_whole(rec))
    trail = "audit trail" if evs else "audit trail: trimmed, nothing of this trade left"
    row.sources["plan"] = "audit trail (entry_planned)" if evs.get("entry_planned") else "unknown (not in the audit trail)"
    row.sources["fills"] = f"exchange: {rec.how}" if whole else f"{trail} (entry_filled, leg_settled, position_closed)"
    row.sources["fees"] = "exchange: myTrades commissions" if whole else "unknown: the audit trail has no fees (0)"
    row.sources["close"] = ("audit trail (position_closed)" if evs.get("position_closed")
                            else "positions stream (CLOSED)" if closed is not None else "unknown")


def totals(rows: list[TradeRow]) -> dict[str, Any]:
    n = len(rows)
    wins = sum(1 for r in rows if r.net_pnl > 0)
    rs = [r.net_r for r in rows if r.net_r is not None]
    curve = equity(rows)
    return {
        "trades": n, "wins": wins, "losses": n - wins, "win_rate": (wins / n) if n else None,
        "gross_pnl": sum((r.gross_pnl for r in rows), ZERO), "fees_quote": sum((r.fees_quote for r in rows), ZERO),
        "net_pnl": sum((r.net_pnl for r in rows), ZERO), "net_r": sum(rs, ZERO),
        "avg_r": (sum(rs, ZERO) / len(rs)).quantize(Decimal("0.001")) if rs else None,
        "max_drawdown": min((dd for _t, _c, dd in curve), default=ZERO),
        "entry_qty": sum((r.entry_qty for r in rows), ZERO), "entry_quote": sum((r.entry_quote for r in rows), ZERO),
        "exit_qty": sum((r.exit_qty for r in rows), ZERO), "exit_quote": sum((r.exit_quote for r in rows), ZERO),
    }


def _market_price(ctx: Ctx, rows: list[TradeRow]) -> tuple[Decimal, str]:
    """The price the carried dust is valued at: the book's bid (what selling it would get), else the last exit."""
    try:
        bid, _ask = ctx.client().book_ticker(ctx.cfg.SYMBOL)
        return bid, "bid now"
    except BinanceError:
        last = max(rows, key=lambda r: r.closed_at, default=None)
        return (last.avg_exit, "last exit: exchange unreachable") if last is not None else (ZERO, "no price")


def dust_summary(ctx: Ctx, rows: list[TradeRow]) -> dict[str, Any]:
    """The dust ledger's balance valued at the market, each trade's dust valued the same way, and the fee case."""
    base = (split_symbol(ctx.cfg.SYMBOL) or (ctx.cfg.SYMBOL,))[0]
    price, how = _market_price(ctx, rows)
    for r in rows:
        r.dust_value = (r.dust_qty * price).quantize(Q4)
    ledger = ctx.state().dust
    fills = [f for r in rows for f in r.fills]
    base_commission = any(f.fee_base > 0 for f in fills)
    other: dict[str, Decimal] = {}   # commissions in neither SYMBOL's asset (BNB burn): not in fees / net
    for f in fills:
        for a, v in f.fee_other.items():
            other[a] = other.get(a, ZERO) + v
    paid_in = "BNB" if other.get("BNB") else ""
    case = fee_case(base_commission, base, paid_in) if fills else "fee case unknown: no exchange records of the trades"
    return {"ledger": ledger, "base": base, "price": price, "price_from": how, "value": (ledger * price).quantize(Q4),
            "base_commission": base_commission if fills else None, "fee_case": case, "fees_other": other}


# ---- output ---------------------------------------------------------------------------------------------

LEG_ORDER = ("tp1", "tp2", "trail", "flatten")


def _leg_text(lg: dict[str, Any] | None) -> str:
    if not lg:
        return "-"
    return f"{human(lg['qty'])}@{human(lg['price'])} {lg['how']}"


def _n(v: Any) -> str:
    return human(v)


def render(ctx: Ctx, rows: list[TradeRow], tot: dict[str, Any]) -> None:
    out = ctx.out
    out.heading(f"closed trades ({len(rows)})")
    if not rows:
        out.line("no closed trade in the positions/events streams")
        return
    legs = [k for k in LEG_ORDER if any(k in r.legs for r in rows)]
    out.table(["trade", "side", "opened (UTC)", "duration", "entry", "qty", *legs, "fees", "dust +/-", "PnL", "net",
               "net R", "reason"],
              [[r.trade_key, r.side, fmt_ts(r.opened_at)[:16], fmt_dur(r.duration_sec), _n(r.avg_entry), _n(r.entry_qty),
                *(_leg_text(r.legs.get(k)) for k in legs), _n(r.fees_quote.quantize(Q4)), _n(r.dust_qty),
                _n(r.gross_pnl), _n(r.net_pnl), _n(r.net_r), r.reason] for r in rows],
              styles=["green" if r.net_pnl > 0 else "red" for r in rows],
              wrap=range(1, 12 + len(legs)))  # all but the trade key may wrap on a narrow terminal
    render_plans(ctx, rows)
    render_sources(ctx, rows)
    for r in rows:
        for note in r.notes:
            out.line(f"  {r.trade_key}: {note}", "yellow")
    wr = tot["win_rate"]
    out.line(f"total: {tot['trades']} trades, {tot['wins']} won, win rate {wr * 100:.1f}%, average "
             f"{_n(tot['avg_r'])} R  |  realised {_n(tot['gross_pnl'])}  fees {_n(tot['fees_quote'].quantize(Q4))}  "
             f"net {_n(tot['net_pnl'])} ({_n(tot['net_r'])} R)  |  max drawdown "
             f"{_n(tot['max_drawdown'])}", "bold green" if tot["net_pnl"] > 0 else "bold red")
    out.line("net = realised PnL - fees (base commissions at the fill price); the dust is not a loss: it is carried")
    d = tot.get("dust") or dust_summary(ctx, rows)
    out.line(f"dust ledger: {_n(d['ledger'])} {d['base']} carried, worth {_n(d['value'])} at {_n(d['price'])} "
             f"({d['price_from']})  |  {d['fee_case']}")
    if d.get("fees_other"):
        paid = ", ".join(f"{_n(v)} {a}" for a, v in sorted(d["fees_other"].items()))
        out.line(f"fees paid in other assets: {paid} (not in the fees and net above: no {d['base']} or quote taken)")


def render_plans(ctx: Ctx, rows: list[TradeRow]) -> None:
    """Each trade's plan as the engine made it (entry_planned), and the base it left behind."""
    ctx.out.table(["trade", "planned entry", "stop", "TP1", "TP2", "R", "stop from", "filled at", "dust qty"],
                  [[r.trade_key, _n(r.planned_entry), _n(r.initial_stop), _n(r.tp1), _n(r.tp2), _n(r.r_unit),
                    r.sl_source or "-", _n(r.avg_entry), _n(r.dust_qty)] for r in rows],
                  title="plans", wrap=range(1, 9))


def render_sources(ctx: Ctx, rows: list[TradeRow]) -> None:
    """Per trade, where its figures came from (the exchange's own records of its orders, or the audit trail)."""
    ctx.out.table(["trade", "fills and prices", "fees", "plan", "close"],
                  [[r.trade_key, r.sources.get("fills", "-"), r.sources.get("fees", "-"), r.sources.get("plan", "-"),
                    r.sources.get("close", "-")] for r in rows],
                  styles=["" if r.source == "exchange" else "yellow" for r in rows],
                  title="where each figure came from", wrap=range(1, 5))


CSV_COLUMNS = ["trade_key", "side", "opened_at", "closed_at", "duration_sec", "planned_entry", "initial_stop", "tp1",
               "tp2", "r_unit", "entry_qty", "entry_quote", "avg_entry", "exit_qty", "exit_quote", "avg_exit",
               "tp1_exit", "tp2_exit", "trail_exit", "flatten_exit", "stop_moves", "fees_quote", "gross_pnl",
               "net_pnl", "gross_r", "net_r", "reason", "source", "sl_source", "dust_qty", "dust_value", "sources"]


def write_csv(path: Path, rows: list[TradeRow]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(CSV_COLUMNS)
        for r in rows:
            iso = lambda t: datetime.fromtimestamp(t, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if t else ""
            w.writerow([r.trade_key, r.side, iso(r.opened_at), iso(r.closed_at),
                        "" if r.duration_sec is None else round(r.duration_sec, 1), _c(r.planned_entry),
                        _c(r.initial_stop), _c(r.tp1), _c(r.tp2), _c(r.r_unit), _c(r.entry_qty), _c(r.entry_quote),
                        _c(r.avg_entry), _c(r.exit_qty), _c(r.exit_quote), _c(r.avg_exit),
                        *(_leg_text(r.legs.get(k)) if r.legs.get(k) else "" for k in LEG_ORDER),
                        ";".join(f"{m['leg']}:{m['stop']}({m['why']})" for m in r.stop_moves),
                        _c(r.fees_quote), _c(r.gross_pnl), _c(r.net_pnl), _c(r.gross_r), _c(r.net_r), r.reason,
                        r.source, r.sl_source, _c(r.dust_qty), _c(r.dust_value),
                        "; ".join(f"{k}: {v}" for k, v in r.sources.items())])


def _c(v: Any) -> str:
    return "" if v is None else (format(v, "f") if isinstance(v, Decimal) else str(v))


def parse_since(text: str) -> float:
    """--since: a date (2025-01-13), a date-time (ISO-8601) or epoch seconds; UTC."""
    s = text.strip()
    if len(s) == 10 and s[4] == "-" and s[7] == "-":
        s += "T00:00:00Z"
    try:
        return float(parse_ts(s))
    except ValueError as e:
        raise CtlError(f"--since {text!r}: expected a date (2025-01-13), an ISO-8601 time or epoch seconds") from e


def run(ctx: Ctx, since: str | None, csv_path: str | None, chart_path: str | None, agg: str | None,
        extra: dict[str, Any] | None = None) -> int:
    rows = build(ctx, parse_since(since) if since else None)
    tot = totals(rows)
    tot["dust"] = dust_summary(ctx, rows)
    if csv_path:
        write_csv(Path(csv_path), rows)
    if chart_path:
        from services.executorctl.chart import draw
        draw(Path(chart_path), rows, Path(agg or ctx.cfg.AGG_CSV), ctx.cfg.SYMBOL)
    if ctx.out.as_json:
        ctx.out.json({"trades": [jsonable(r) for r in rows], "totals": tot, "csv": csv_path, "chart": chart_path,
                      **(extra or {})})
        return 0
    render(ctx, rows, tot)
    if csv_path:
        ctx.out.line(f"CSV: {csv_path}")
    if chart_path:
        ctx.out.line(f"chart: {chart_path}")
    return 0
