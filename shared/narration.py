"""Turn audit events into the lines a person reads: the demo narrates its trade with it, `executorctl events`
prints the same lines (both import it from here, downward; executorctl does not import the demo)."""
from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal

from shared.domain.messages import Event


def _t(at: float) -> str:
    return datetime.fromtimestamp(at, tz=timezone.utc).strftime("%H:%M:%S")


def describe(ev: Event) -> str | None:
    """One human line for an event worth showing, else None."""
    d = ev.data
    k = ev.kind
    lines = {
        "entry_planned": lambda: (f"PLAN     {d['side']} {d['qty']} BTC, entry {d['entry']} | stop {d['sl']} ({d['sl_source']})"
                                  f" | TP1 {d['tp1']} | TP2 {d['tp2']} | R {d['r']}"
                                  + (f" | k {Decimal(str(d['k'])):.6f} (feed entry {d['feed_entry']} stop {d['feed_sl']})"
                                     if str(d.get('k', '1')) not in ('1', '1.000000000000') else "")),
        "plan_below_fees": lambda: (f"FEES     TP1 gain {d['tp1_gain']} < round-trip fees {d['round_trip_fees']} "
                                    f"(rate {d['fee_rate']})" + ("; skipped" if d.get('skipped') else "")),
        "entry_sent": lambda: f"ENTRY    {d.get('order_type')} {d.get('side')} sent as {d['client_id']} ({d['ms']} ms) -> {d['status']}",
        "entry_filled": lambda: f"FILLED   {d['qty']} @ {d['avg_entry']}: handed over to the exit manager",
        "legs_planned": lambda: "LEGS     " + ", ".join(f"{lg['name']} {lg['qty']}" for lg in d["legs"]),
        "leg_placed": lambda: (f"PROTECT  {d['leg']}: " + (f"OCO take-profit {d['tp']} + " if d.get('tp') else "")
                               + f"stop {d['stop']} (limit {d['limit']}) for {d['qty']}"),
        "leg_settled": lambda: (f"EXIT     {d['leg']}: {d['filled']} filled by {d['reason'] or 'cancel'}"
                                if str(d.get('filled')) not in ("0", "0E-8") else None),
        "stop_move": lambda: f"MOVE     {d['leg']} stop -> {d['stop']} ({d['why']})",
        "stop_move_window": lambda: f"         stop move window {d['ms']} ms" + (" (atomic cancelReplace)" if d.get("atomic") else ""),
        "break_even_done": lambda: f"BE       stops at break-even {d['stop']}",
        "trailing_on": lambda: f"TRAIL    trailing active from stop {d['stop']}",
        "flatten_requested": lambda: f"FLATTEN  {d['reason']}",
        "position_closed": lambda: (f"CLOSED   {d['reason']}: {d['qty']} BTC, entry {d['avg_entry']} exit {d['avg_exit']}, "
                                    f"PnL {d['pnl']} USDC ({d['r']} R)"),
        "entry_aborted": lambda: f"ABORTED  {d['reason']}",
        "signal_ignored": lambda: f"IGNORED  {d['reason']}",
        "signal_aborted": lambda: f"ABORTED  {d['reason']}",
    }
    fn = lines.get(k)
    if fn is None:
        return None
    text = fn()
    return None if text is None else f"[{_t(ev.at)}] {text}"
