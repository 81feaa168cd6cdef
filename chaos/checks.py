"""The verdict of a chaos run, from the exchange's own records (GET /admin/orders, myTrades) and the
product's Redis (state, events, signals, rejects). Pure: everything it needs is gathered into `Evidence`."""
from __future__ import annotations

from collections import defaultdict
from decimal import Decimal
from typing import Any, Callable

import msgspec

from chaos.exposure import gaps, worst_gap_sec
from chaos.inputs import Written
from shared.domain.symbol import split_symbol
from shared.domain.messages import Event, Reject, Signal
from shared.domain.order_ids import trade_key_of
from shared.domain.orders import Trade
from shared.domain.position import State

OPEN = ("NEW", "PARTIALLY_FILLED")
STOP_TYPES = ("STOP_LOSS_LIMIT", "STOP_LOSS")
PROTECT_EVENTS = ("leg_placed", "leg_adopted")


class Evidence(msgspec.Struct):
    orders: list[dict]
    entry_trades: dict[int, list[Trade]]          # orderId -> myTrades of each filled entry order
    events: list[tuple[int, Event]]               # (wall ms of the stream id, event)
    signals: list[Signal]
    rejects: list[Reject]
    state: State
    written: list[Written]
    window_target_sec: float
    qty_step: Decimal
    trade_mode: str = "spot"
    margin: dict = {}                             # /admin/state "margin" (wallets) when trade_mode is margin
    exit_trades: dict[int, list[Trade]] = {}      # orderId -> myTrades of every other order with a fill


class Verdict(msgspec.Struct):
    violations: list[str]
    notes: list[str]
    figures: dict
    windows: list[dict]


def _d(v: Any) -> Decimal:
    return Decimal(str(v)) if v is not None and v != "" else Decimal(0)


class Findings(msgspec.Struct):
    """What one check found: violations and notes, in the order it found them."""
    bad: list[str] = []
    notes: list[str] = []

    def add(self, other: Findings) -> None:
        self.bad.extend(other.bad)
        self.notes.extend(other.notes)


def _entries(orders: list[dict]) -> list[dict]:
    """The entry orders with a fill."""
    return [o for o in orders if "-en-" in o["clientOrderId"] and _d(o["executedQty"]) > 0]


def verify(ev: Evidence, wall_after: Callable[[int], float | None],
           wall_before: Callable[[int], float | None], last_wall: float | None = None) -> Verdict:
    """Every check over the run's evidence; the violations and notes in the checks' order, and the figures."""
    found = Findings()
    by_tk, events_of = _by_trade(ev, found)
    planned = _planned(ev)
    found.add(_one_trade_per_signal(ev))
    filled_tks = _one_entry_per_trade(by_tk, planned, found)
    windows = _stop_windows(ev, by_tk, events_of, planned, filled_tks, (wall_after, wall_before, last_wall), found)
    found.add(_finished_trades_closed(ev, by_tk))
    found.add(_open_position_covered(ev, by_tk))
    margin_note = _margin_debt(ev, found)
    seen_close = _pnl_matches(ev, by_tk, found)
    found.add(_signals_published_once(ev))
    reasons = _valid_lines_decided(ev, found)
    wrong_reason = _garbage_rejected(ev, found)
    figures = _figures(ev, windows, filled_tks, seen_close, reasons, margin_note, wrong_reason)
    return Verdict(found.bad, found.notes, figures, windows)


def _by_trade(ev: Evidence, found: Findings) -> tuple[dict[str, list[dict]], dict[str, list[tuple[int, Event]]]]:
    """The exchange's orders and the events per trade key; an order that is not the executor's is a violation."""
    by_tk: dict[str, list[dict]] = defaultdict(list)
    for o in ev.orders:
        tk = trade_key_of(o["clientOrderId"])
        if tk is None:
            found.bad.append(f"order {o['orderId']} {o['clientOrderId']!r} is not one of the executor's client ids")
            continue
        by_tk[tk].append(o)
    events_of: dict[str, list[tuple[int, Event]]] = defaultdict(list)
    for wall_ms, e in ev.events:
        if e.trade_key:
            events_of[e.trade_key].append((wall_ms, e))
    return by_tk, events_of


def _planned(ev: Evidence) -> dict[str, Event]:
    """The first entry_planned event of each trade key."""
    planned: dict[str, Event] = {}
    for _w, e in ev.events:
        if e.kind == "entry_planned":
            planned.setdefault(e.trade_key, e)
    return planned


def _one_trade_per_signal(ev: Evidence) -> Findings:
    """1a. one signal -> at most one trade key."""
    tks_of_signal: dict[str, set[str]] = defaultdict(set)
    for _w, e in ev.events:
        if e.kind == "entry_planned":
            tks_of_signal[str(e.data.get("signal_key"))].add(e.trade_key)
    return Findings(bad=[f"signal {sk} produced {len(tks)} trade keys: {sorted(tks)}"
                         for sk, tks in tks_of_signal.items() if len(tks) > 1])


def _one_entry_per_trade(by_tk: dict[str, list[dict]], planned: dict[str, Event], found: Findings) -> list[str]:
    """1b. one trade key -> at most one filled entry, no more than planned; the trade keys with a filled entry."""
    filled_tks = []
    for tk, orders in sorted(by_tk.items()):
        entries = _entries(orders)
        if len(entries) > 1:
            found.bad.append(f"trade {tk}: {len(entries)} entry orders with fills: "
                             + ", ".join(f"{o['clientOrderId']} {o['status']} {o['executedQty']}" for o in entries))
        if entries:
            filled_tks.append(tk)
            got = sum(_d(o["executedQty"]) for o in entries)
            if tk in planned and got > _d(planned[tk].data.get("qty")):
                found.bad.append(f"trade {tk}: entries filled {got} > planned {planned[tk].data.get('qty')}")
        if tk not in planned and any("-en-" in o["clientOrderId"] for o in orders):
            found.bad.append(f"trade {tk}: entry orders on the exchange but no entry_planned event")
    return filled_tks


Clocks = tuple[Callable[[int], float | None], Callable[[int], float | None], float | None]


def _stop_windows(ev: Evidence, by_tk: dict[str, list[dict]], events_of: dict[str, list[tuple[int, Event]]],
                  planned: dict[str, Event], filled_tks: list[str], clocks: Clocks, found: Findings) -> list[dict]:
    """2. every filled quantity had a stop on the exchange within the target window (wall clock): per trade, the
    longest time any filled quantity had no resting stop (chaos.exposure), and the fill -> first stop time."""
    trades_of = {**ev.exit_trades, **ev.entry_trades}
    return [_stop_window(ev, tk, by_tk[tk], events_of[tk], tk in planned, trades_of, clocks, found)
            for tk in filled_tks]


def _fill_lower_bound(ev: Evidence, tk: str, orders: list[dict], events: list[tuple[int, Event]], planned: bool,
                      wall_after: Callable[[int], float | None], found: Findings) -> tuple[int, float | None]:
    """(market ms of the entry's first fill, the earliest wall time it can have happened)."""
    entry_ids = [o["orderId"] for o in _entries(orders)]
    fill_ms = [t.time for oid in entry_ids for t in ev.entry_trades.get(oid, [])]
    if not fill_ms:  # no trade list: the order's last update is its last fill, or later (a cancel)
        fill_ms = [o["updateTime"] for o in orders if o["orderId"] in entry_ids]
        found.notes.append(f"trade {tk}: no myTrades for its filled entry; fill time taken from updateTime")
    t_fill = min(fill_ms)
    lbs = [w for w in (wall_after(t_fill),) if w is not None]
    if planned:
        lbs.append(next(w for w, e in events if e.kind == "entry_planned") / 1000)
    return t_fill, (max(lbs) if lbs else None)


def _first_stop_ends(orders: list[dict], events: list[tuple[int, Event]],
                     wall_before: Callable[[int], float | None]) -> tuple[list[float], list[dict], list[dict]]:
    """(the latest wall times the first protection can have happened, the stop orders, the filled market closes)."""
    ends = []
    ev_stop = next((w / 1000 for w, e in events if e.kind in PROTECT_EVENTS), None)
    if ev_stop is not None:
        ends.append(ev_stop)
    stops = sorted((o for o in orders if o["type"] in STOP_TYPES), key=lambda o: (o["time"], o["orderId"]))
    if stops:
        ub = wall_before(stops[0]["time"])
        if ub is not None:
            ends.append(ub)
    sells_flat = sorted((o for o in orders if "-fl-" in o["clientOrderId"] and _d(o["executedQty"]) > 0),
                        key=lambda o: o["time"])
    if not stops and sells_flat:
        ub = wall_before(sells_flat[0]["time"])
        if ub is not None:
            ends.append(ub)
    return ends, stops, sells_flat


def _stop_window(ev: Evidence, tk: str, orders: list[dict], events: list[tuple[int, Event]], planned: bool,
                 trades_of: dict[int, list[Trade]], clocks: Clocks, found: Findings) -> dict:
    """One filled trade's window row; a trade left unprotected too long (or never) is a violation."""
    wall_after, wall_before, last_wall = clocks
    t_fill, fill_lb = _fill_lower_bound(ev, tk, orders, events, planned, wall_after, found)
    ends, stops, sells_flat = _first_stop_ends(orders, events, wall_before)
    ev_stop = next((w / 1000 for w, e in events if e.kind in PROTECT_EVENTS), None)
    ev_filled = next((w / 1000 for w, e in events if e.kind == "entry_filled"), None)
    row = {"trade_key": tk, "fill_market_ms": t_fill, "stop_orders": len(stops),
           "event_window_sec": round(ev_stop - ev_filled, 3) if ev_stop and ev_filled else None}
    if fill_lb is not None and ends:
        row["first_stop_sec"] = round(max(0.0, min(ends) - fill_lb), 3)
    base = (split_symbol(orders[0].get("symbol", "")) or ("BTC",))[0]
    gs = gaps(orders, trades_of, ev.qty_step, base)
    win, worst = worst_gap_sec(gs, wall_after, wall_before, last_wall)
    row["gaps"] = len(gs)
    if worst is not None:
        row.update(worst_gap_market_ms=[worst.start_ms, worst.end_ms], worst_gap_qty=str(worst.max_unprotected))
    if not stops and not sells_flat:
        found.bad.append(f"trade {tk}: entry filled but no stop order was ever placed on the exchange")
    elif win is None:
        if gs:
            found.notes.append(f"trade {tk}: window not measurable (clock samples missing)")
        else:
            row["window_sec"] = 0.0
    else:
        row["window_sec"] = round(win, 3)
        if win > ev.window_target_sec:
            found.bad.append(f"trade {tk}: {worst.max_unprotected if worst else '?'} of the filled quantity "
                             f"unprotected (no stop on the exchange) for up to {win:.2f} s wall "
                             f"(target {ev.window_target_sec:g} s)")
    return row


def _finished_trades_closed(ev: Evidence, by_tk: dict[str, list[dict]]) -> Findings:
    """3. no order of a finished trade is still open."""
    current = ev.state.position.trade_key if ev.state.position is not None else None
    return Findings(bad=[f"trade {tk} is finished but {o['clientOrderId']} ({o['type']} {o['side']}) is still "
                         f"{o['status']} on the exchange"
                         for tk, orders in sorted(by_tk.items()) if tk != current
                         for o in orders if o["status"] in OPEN])


def _open_position_covered(ev: Evidence, by_tk: dict[str, list[dict]]) -> Findings:
    """3b. the open position (if any) is covered by resting stops."""
    found = Findings()
    pos = ev.state.position
    if pos is None or pos.trade_key not in by_tk:
        return found
    orders = by_tk[pos.trade_key]
    entry_side = next((o["side"] for o in orders if "-en-" in o["clientOrderId"]), "BUY")
    got = sum(_d(o["executedQty"]) for o in orders if "-en-" in o["clientOrderId"])
    # only a commission taken in the bought base asset lowers what is held; one paid in BNB (PAPER_BNB_BURN) or
    # in the quote asset (a short's sell) does not
    base = (split_symbol(orders[0].get("symbol", "")) or ("BTC",))[0]
    fee = sum(_d(t.commission) for o in orders if "-en-" in o["clientOrderId"] and o["side"] == "BUY"
              for t in ev.entry_trades.get(o["orderId"], []) if t.commission_asset == base)
    out = sum(_d(o["executedQty"]) for o in orders if "-en-" not in o["clientOrderId"] and o["side"] != entry_side)
    held = got - fee - out
    resting = sum(_d(o["origQty"]) - _d(o["executedQty"]) for o in orders
                  if o["type"] in STOP_TYPES and o["status"] in OPEN)
    if held >= ev.qty_step and held - resting >= ev.qty_step:
        found.bad.append(f"open trade {pos.trade_key}: holds {held} but resting stops cover {resting}")
    found.notes.append(f"trade {pos.trade_key} still open at the end ({pos.status}): holds {held}, "
                       f"stops cover {resting}")
    return found


def _margin_debt(ev: Evidence, found: Findings) -> str:
    """4. no margin debt after the close; the figure's text."""
    if ev.trade_mode != "margin":
        return "n/a (TRADE_MODE=spot)"
    if ev.state.position is not None:
        return "n/a (a position is still open)"
    debt = {f"{acct}:{a}": b.get("borrowed") for acct, w in ev.margin.items() for a, b in w.items()
            if _d(b.get("borrowed")) != 0}
    if debt:
        found.bad.append(f"margin debt left with no position open: {debt}")
    return "0" if not debt else str(debt)


def _pnl_matches(ev: Evidence, by_tk: dict[str, list[dict]], found: Findings) -> set[str]:
    """5. recorded PnL == the exchange's fills, each trade closed once; the closed trade keys."""
    seen_close: set[str] = set()
    for _w, e in ev.events:
        if e.kind != "position_closed":
            continue
        tk = e.trade_key
        if tk in seen_close:
            found.bad.append(f"trade {tk}: position_closed recorded twice")
            continue
        seen_close.add(tk)
        orders = by_tk.get(tk, [])
        entries = _entries(orders)
        if not entries:
            found.bad.append(f"trade {tk}: closed but no filled entry on the exchange")
            continue
        problems = _result_problems(e, orders, entries)
        if problems:
            found.bad.append(f"trade {tk}: recorded result differs from the exchange's fills: " + "; ".join(problems))
    return seen_close


def _result_problems(e: Event, orders: list[dict], entries: list[dict]) -> list[str]:
    """How a position_closed event's qty, prices and PnL differ from the exchange's fills of the trade."""
    side = entries[0]["side"]
    exits = [o for o in orders
             if "-en-" not in o["clientOrderId"] and o["side"] != side and _d(o["executedQty"]) > 0]
    q_out = sum(_d(o["executedQty"]) for o in exits)
    quote_out = sum(_d(o["cummulativeQuoteQty"]) for o in exits)
    q_in = sum(_d(o["executedQty"]) for o in entries)
    quote_in = sum(_d(o["cummulativeQuoteQty"]) for o in entries)
    d = e.data
    qty, avg_entry = _d(d.get("qty")), _d(d.get("avg_entry"))
    avg_exit, pnl = _d(d.get("avg_exit")), _d(d.get("pnl"))
    exch_pnl = (quote_out - avg_entry * q_out) if side == "BUY" else (avg_entry * q_out - quote_out)
    problems = []
    if qty != q_out:
        problems.append(f"qty {qty} != exchange exits {q_out}")
    if q_in and abs(avg_entry - quote_in / q_in) > Decimal("0.01"):
        problems.append(f"avg_entry {avg_entry} != exchange {quote_in / q_in:.2f}")
    if q_out and abs(avg_exit - quote_out / q_out) > Decimal("0.01"):
        problems.append(f"avg_exit {avg_exit} != exchange {quote_out / q_out:.2f}")
    if abs(pnl - exch_pnl) > Decimal("0.001"):
        problems.append(f"pnl {pnl} != exchange {exch_pnl:.6f}")
    return problems


def _signal_counts(ev: Evidence) -> dict[str, int]:
    sig_keys: dict[str, int] = defaultdict(int)
    for s in ev.signals:
        sig_keys[s.key] += 1
    return sig_keys


def _signals_published_once(ev: Evidence) -> Findings:
    """6a. no signal published twice."""
    return Findings(bad=[f"signal {k} published {n} times" for k, n in _signal_counts(ev).items() if n > 1])


def _valid_lines_decided(ev: Evidence, found: Findings) -> dict[str, int]:
    """6b. no valid signal lost: each is published and decided by position_engine; the decisions by reason."""
    sig_keys = _signal_counts(ev)
    handled: dict[str, str] = {}
    for _w, e in ev.events:
        sk = e.data.get("signal_key") if isinstance(e.data, dict) else None
        if sk and e.kind in ("entry_planned", "signal_ignored", "signal_aborted"):
            handled.setdefault(str(sk), e.kind if e.kind == "entry_planned" else f"{e.kind}: {e.data.get('reason')}")
    reasons: dict[str, int] = defaultdict(int)
    for w in (w for w in ev.written if w.valid):
        if w.key not in sig_keys:
            rej = next((r for r in ev.rejects if r.line.startswith(w.line[:200])), None)
            found.bad.append(f"valid line lost: {w.line}" + (f" (rejected: {rej.reason} {rej.detail})" if rej else
                                                             " (neither on signals nor on rejects)"))
        elif w.key not in handled:
            found.bad.append(f"signal {w.key} was published but position_engine recorded no decision for it")
        else:
            h = handled[w.key]
            reasons["entry" if h == "entry_planned" else h.split(" (")[0]] += 1
    return reasons


def _garbage_rejected(ev: Evidence, found: Findings) -> int:
    """6c. no garbage line published: each is on rejects; how many with another reason than expected (a note)."""
    wrong_reason = 0
    for w in ev.written:
        if w.valid:
            continue
        rej = next((r for r in ev.rejects if w.token in r.line), None)
        if rej is None:
            found.bad.append(f"garbage line not on rejects: {w.line[:120]}")
        elif rej.reason not in w.expect.split("|"):
            wrong_reason += 1
            found.notes.append(f"garbage {w.token}: rejected as {rej.reason}, expected {w.expect}")
    return wrong_reason


def _figures(ev: Evidence, windows: list[dict], filled_tks: list[str], seen_close: set[str],
             reasons: dict[str, int], margin_note: str, wrong_reason: int) -> dict:
    """The run's figures for the report."""
    valid = sum(1 for w in ev.written if w.valid)
    return {
        "signals_written_valid": valid,
        "lines_written_invalid": len(ev.written) - valid,
        "signals_published": len(ev.signals),
        "rejects": len(ev.rejects),
        "signal_decisions": dict(sorted(reasons.items())),
        "entries_filled": len(filled_tks),
        "trades_closed": len(seen_close),
        "orders_on_exchange": len(ev.orders),
        "worst_window_sec": max((w["window_sec"] for w in windows if "window_sec" in w), default=None),
        "worst_first_stop_sec": max((w["first_stop_sec"] for w in windows if "first_stop_sec" in w), default=None),
        "worst_event_window_sec": max((w["event_window_sec"] for w in windows if w.get("event_window_sec") is not None),
                                      default=None),
        "worst_stop_move_ms": max((float(e.data.get("ms", 0)) for _w, e in ev.events if e.kind == "stop_move_window"),
                                  default=None),
        "stop_moves": sum(1 for _w, e in ev.events if e.kind == "stop_move_window"),
        "margin_debt_after_close": margin_note,
        "reject_reason_mismatches": wrong_reason,
    }


def verify_saved(run_dir: str) -> Verdict:
    """Recompute the verdict of a finished run from its `evidence.json` (after a change to the checks)."""
    import bisect
    import json
    from pathlib import Path

    raw = json.loads((Path(run_dir) / "evidence.json").read_text())
    walls, markets = raw["clock"]["walls"], raw["clock"]["markets"]

    def after(m: int) -> float | None:
        i = bisect.bisect_left(markets, m)
        return walls[i - 1] if i > 0 else None

    def before(m: int) -> float | None:
        i = bisect.bisect_right(markets, m)
        return walls[i] if i < len(markets) else None

    return verify(msgspec.convert(raw["evidence"], Evidence, strict=False), after, before,
                  walls[-1] if walls else None)
