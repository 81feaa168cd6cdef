"""Operator commands (`halt`, `resume`, `cancel-entry`, `flatten`) through `{prefix}commands`, each acknowledged
by the event its owner writes to the audit trail; and `emergency`, the original product's emergency shutdown.

executorctl never writes the state, and places no order except in one documented last resort: the position
engine owns halt/resume/cancel, the exit manager owns flatten. A command sent while its owner is down stays
queued in the owner's consumer group and is applied when the owner starts again; executorctl says so instead
of acting in its place.

The last resort (`emergency --last-resort`, off by default): when the exit manager has no heartbeat, cancel the
trade's orders and close what the exchange says the trade still holds with ONE market order whose client id is
the exit manager's own deterministic flatten id (`<trade key>-fl-<flatten_attempt>`). Before placing, that id is
asked for on the exchange and an existing order is adopted, never repeated; the queued flatten command then
makes the exit manager, when it starts, adopt the same order by the same id, book it and close the trade. So
the position is sold once, whoever gets there first.
"""
from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from services.executorctl.ctx import CtlError, Ctx, fmt_ts, operator_name
from services.executorctl.status import alive
from services.executorctl.trail import Tail, event_line, event_style
from shared.adapters.binance_rest import NotFound
from shared.adapters.redis_streams import publish
from shared.domain.commands import TARGETED, new_command
from shared.domain.messages import Command, Event
from shared.domain.order_ids import client_id, trade_key_of
from shared.domain.position import ENGINE_PHASES, EXIT_PHASES, Position

OWNER = {"halt": "position_engine", "resume": "position_engine", "cancel_entry": "position_engine",
         "flatten": "exit_manager"}
# Events that answer each command (the owner writes one of them when it has applied the command).
# The flatten that emergency queues for a dead exit manager (it names its trade): valid this long.
EMERGENCY_FLATTEN_TTL_SEC = 3600
ACK_KINDS = {"halt": ("halt_set",), "resume": ("halt_cleared",), "cancel_entry": ("entry_cancel_requested",),
             "flatten": ("flatten_requested",)}


def _acks(cmd: str, by: str) -> Callable[[Event], bool]:
    owner = OWNER[cmd]

    def accept(ev: Event) -> bool:
        if ev.service != owner:
            return False
        if ev.kind in ("command_noop", "command_refused"):
            return ev.data.get("cmd") == cmd
        if ev.kind not in ACK_KINDS[cmd]:
            return False
        if cmd == "flatten":
            return ev.data.get("reason") == "operator"
        return ev.data.get("by", by) == by
    return accept


def _publish(ctx: Ctx, cmd: str, reason: str, ttl_sec: float | None = None) -> Command:
    """Write `cmd` for the current trade (flatten, cancel_entry), expiring after COMMAND_TTL_SEC (or ttl_sec) of
    the stack's clock, signed with the Redis user that writes it."""
    pos = ctx.state().position
    target = pos.trade_key if pos is not None and cmd in TARGETED else ""
    c = new_command(cmd, ctx.clock.now(), ttl_sec or ctx.cfg.COMMAND_TTL_SEC, operator_name(ctx.r), reason, target)
    publish(ctx.r, ctx.key("commands"), c, ctx.cfg.STREAM_MAXLEN)
    return c


def send(ctx: Ctx, cmd: str, reason: str, timeout: float) -> Event:
    """Publish `cmd` and wait for its acknowledgement; raise CtlError (exit 3) when none comes in time."""
    owner = OWNER[cmd]
    owner_alive = alive(ctx, owner)
    tail = Tail(ctx)
    by = _publish(ctx, cmd, reason).by
    ev = tail.wait(_acks(cmd, by), timeout if owner_alive else min(timeout, 3.0))
    if ev is None:
        why = (f"{owner} has no heartbeat: the command stays queued in {ctx.key('commands')} and is applied when "
               f"{owner} starts again" if not owner_alive else f"{owner} did not acknowledge within {timeout:.0f}s")
        raise CtlError(f"{cmd}: not acknowledged: {why}", 3)
    return ev


def _say_ack(ctx: Ctx, ev: Event) -> None:
    ctx.out.line(event_line(ev), event_style(ev) or ("yellow" if ev.kind in ("command_noop", "command_refused")
                                                     else "green"))


def run_simple(ctx: Ctx, cmd: str, reason: str, timeout: float, wait_close: bool = True) -> int:
    """halt / resume / cancel-entry / flatten with the acknowledgement printed (flatten also waits for the
    position to close, printing what the exit manager does)."""
    st = ctx.state()
    if cmd == "flatten" and st.position is not None and st.position.status in ENGINE_PHASES:
        ctx.out.line(f"note: the entry of {st.position.trade_key} is not filled yet ({st.position.status}): "
                     "flatten only closes a filled position; use cancel-entry (or emergency)", "yellow")
    ev = send(ctx, cmd, reason, timeout)
    result: dict[str, Any] = {"command": cmd, "ack": ev.kind, "service": ev.service, "at": ev.at,
                              "trade_key": ev.trade_key, "data": ev.data}
    if not ctx.out.as_json:
        _say_ack(ctx, ev)
    if cmd == "flatten" and ev.kind == "flatten_requested" and wait_close:
        closed = _wait_closed(ctx, ev.trade_key, timeout, echo=not ctx.out.as_json)
        result["closed"] = closed.data if closed else None
        if closed is None:
            if ctx.out.as_json:
                ctx.out.json(result)
            raise CtlError(f"flatten of {ev.trade_key}: not closed within {timeout:.0f}s (see executorctl events "
                           f"--trade {ev.trade_key})", 3)
    if ctx.out.as_json:
        ctx.out.json(result)
    return 1 if ev.kind == "command_refused" else 0


def _wait_closed(ctx: Ctx, trade_key: str, timeout: float, echo: bool) -> Event | None:
    """Wait for `position_closed` of `trade_key` (or find the trade already closed)."""
    tail = Tail(ctx)
    st = ctx.state()
    lc = st.last_closed
    if (st.position is None or st.position.trade_key != trade_key) and lc is not None and lc.trade_key == trade_key:
        return Event(service="exit_manager", kind="position_closed", at=lc.closed_at, trade_key=trade_key,
                     data={"reason": lc.exit_reason, "pnl": lc.pnl_quote, "r": lc.r_multiple})

    def show(ev: Event) -> None:
        if echo and ev.trade_key == trade_key and ev.kind in ("order_cancelled", "flatten_filled", "position_closed",
                                                             "flatten_rejected", "leg_settled"):
            ctx.out.line("  " + event_line(ev), event_style(ev))
    return tail.wait(lambda e: e.kind == "position_closed" and e.trade_key == trade_key, timeout, show)


def _wait_state(ctx: Ctx, cond: Callable[[Any], bool], timeout: float) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        st = ctx.state()
        if cond(st):
            return st
        if time.monotonic() > deadline:
            return None
        time.sleep(0.1)  # polling interval of a state condition with a deadline


class Report:
    """What emergency did, step by step."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.steps: list[dict[str, Any]] = []
        self.sold_by_ctl = ""   # the trade whose position the last resort closed on the exchange

    def add(self, step: str, ok: bool, detail: str) -> None:
        self.steps.append({"step": step, "ok": ok, "detail": detail})
        if not self.ctx.out.as_json:
            self.ctx.out.line(f"{'OK ' if ok else 'FAIL'} {step:<14} {detail}", "green" if ok else "bold red")

    @property
    def ok(self) -> bool:
        return all(s["ok"] for s in self.steps)


def _try_send(ctx: Ctx, rep: Report, step: str, cmd: str, reason: str, timeout: float) -> Event | None:
    try:
        ev = send(ctx, cmd, reason, timeout)
    except CtlError as e:
        rep.add(step, False, str(e))
        return None
    noop = ev.kind in ("command_noop", "command_refused")
    rep.add(step, ev.kind != "command_refused", f"{ev.service}: {ev.kind}" + (f" ({ev.data.get('reason')})" if noop else
                                                      (f" {ev.trade_key}" if ev.trade_key else "")))
    return ev


def emergency(ctx: Ctx, keep_position: bool, reason: str, timeout: float, last_resort: bool = False) -> int:
    """Halt; cancel a pending entry; flatten the position (or keep it and verify every live leg's stop is on the
    exchange); report. Exit 0 when every step succeeded, 1 otherwise."""
    rep = Report(ctx)
    if not ctx.out.as_json:
        ctx.out.heading(f"EMERGENCY ({'keep position' if keep_position else 'flatten'}) at {fmt_ts(time.time())} UTC")
    _try_send(ctx, rep, "halt", "halt", reason, timeout)
    st = ctx.state()
    pos = st.position
    if pos is not None and pos.status in ENGINE_PHASES:
        tk = pos.trade_key
        if _try_send(ctx, rep, "cancel entry", "cancel_entry", reason, timeout) is not None:
            st2 = _wait_state(ctx, lambda s: s.position is None or s.position.trade_key != tk
                              or s.position.status not in ENGINE_PHASES, timeout)
            if st2 is None:
                rep.add("entry gone", False, f"{tk} still {ctx.state().position.status} after {timeout:.0f}s")
            elif st2.position is not None and st2.position.trade_key == tk:
                rep.add("entry gone", True, f"{tk} partly filled ({st2.position.filled_qty}): now a position "
                        f"({st2.position.status})")
            else:
                rep.add("entry gone", True, f"{tk} cancelled, nothing filled")
    else:
        rep.add("cancel entry", True, "no pending entry")
    st = ctx.state()
    pos = st.position
    if pos is None or pos.status not in EXIT_PHASES:
        rep.add("flatten", True, "no filled position: nothing to flatten or protect")
    elif keep_position:
        _verify_stops(ctx, rep, pos.trade_key, timeout)
    else:
        tk = pos.trade_key
        if not alive(ctx, "exit_manager"):
            _publish_only(ctx, "flatten", reason)
            if last_resort:
                _last_resort_flatten(ctx, rep, pos)
            else:
                rep.add("flatten", False, f"exit_manager has no heartbeat: {tk} is NOT flattened. The flatten "
                        "command is queued and runs when exit_manager starts: restart it (scripts/ctl.sh restart "
                        "exit_manager), or run emergency --last-resort to sell now")
        elif _try_send(ctx, rep, "flatten", "flatten", reason, timeout) is not None:
            closed = _wait_closed(ctx, tk, timeout * 2, echo=not ctx.out.as_json)
            if closed is None:
                rep.add("closed", False, f"{tk} not closed within {timeout * 2:.0f}s")
            else:
                d = closed.data
                rep.add("closed", True, f"{tk}: {d.get('reason')} PnL {d.get('pnl')} ({d.get('r')} R)")
    _final_check(ctx, rep, keep_position)
    doc = {"keep_position": keep_position, "ok": rep.ok, "steps": rep.steps}
    if ctx.out.as_json:
        ctx.out.json(doc)
    else:
        ctx.out.line("emergency done: " + ("every step succeeded" if rep.ok else "SOME STEPS FAILED: see above"),
                     "bold green" if rep.ok else "bold red")
    return 0 if rep.ok else 1


def _last_resort_flatten(ctx: Ctx, rep: Report, pos: Position) -> None:
    """The exit manager is dead: cancel the trade's orders, then close what the exchange says it still holds
    with the exit manager's own deterministic flatten id (adopting an order that already has it)."""
    client, sym, tk = ctx.client(), ctx.cfg.SYMBOL, pos.trade_key
    cid = client_id(tk, "flatten", pos.flatten_attempt)
    try:
        existing = client.get_order(sym, client_order_id=cid)
    except NotFound:
        existing = None
    try:
        for o in client.open_orders(sym):
            if trade_key_of(o.client_order_id) != tk:
                continue
            try:
                if o.order_list_id != -1:
                    client.cancel_order_list(sym, order_list_id=o.order_list_id)
                else:
                    client.cancel_order(sym, client_order_id=o.client_order_id)
            except NotFound:
                pass
        left = [o.client_order_id for o in client.open_orders(sym) if trade_key_of(o.client_order_id) == tk]
        if left:
            rep.add("last resort", False, f"orders of {tk} still open after cancel: {', '.join(left)}; nothing sold")
            return
        rep.add("cancel orders", True, f"every open order of {tk} cancelled")
        if existing is not None:
            rep.add("last resort", True, f"{cid} already on the exchange ({existing.status}, {existing.executed_qty} "
                    "filled): adopted, not repeated")
            rep.sold_by_ctl = tk
            return
        f = client.exchange_info(sym)
        held = _held_on_exchange(ctx, tk, pos, f.base_asset)
        qty = (held // f.step_size) * f.step_size
        if qty < f.min_qty:
            rep.add("last resort", True, f"{tk}: nothing left to sell ({held} held)")
            rep.sold_by_ctl = tk
            return
        side = "SELL" if pos.side == "long" else "BUY"
        o = client.place_order(sym, side, "MARKET", qty, client_order_id=cid)
    except Exception as e:  # noqa: BLE001 - reported; the queued flatten command stays for the exit manager
        rep.add("last resort", False, f"{type(e).__name__}: {e}"[:300])
        return
    rep.add("last resort", o.status == "FILLED", f"MARKET {side} {qty} as {cid}: {o.status}, {o.executed_qty} "
            f"filled for {o.cummulative_quote_qty}; the exit manager books it by this id when it starts")
    if o.status == "FILLED":
        rep.sold_by_ctl = tk


def _held_on_exchange(ctx: Ctx, trade_key: str, pos: Position, base: str) -> Decimal:
    """What the trade holds by the exchange's records: entry fills less the commission taken in the bought asset,
    less every exit fill; for a spot long never more than the account's free base asset."""
    client, sym = ctx.client(), ctx.cfg.SYMBOL
    entry_side = "BUY" if pos.side == "long" else "SELL"
    got = sold = fee_base = Decimal(0)
    for o in client.all_orders(sym, limit=1000):
        if trade_key_of(o.client_order_id) != trade_key or o.executed_qty <= 0:
            continue
        if o.side == entry_side:
            got += o.executed_qty
            for t in client.my_trades(sym, order_id=o.order_id):
                if pos.side == "long" and t.commission_asset == base:
                    fee_base += t.commission
        else:
            sold += o.executed_qty
    held = got - fee_base - sold
    if pos.side == "long" and ctx.cfg.TRADE_MODE == "spot":
        free = client.account().get(base, (Decimal(0), Decimal(0)))[0]
        held = min(held, free)
    return max(held, Decimal(0))


def _publish_only(ctx: Ctx, cmd: str, reason: str) -> None:
    # for the trade it names only, so a longer life is safe: the exit manager may be restarted well after it
    _publish(ctx, cmd, reason, max(ctx.cfg.COMMAND_TTL_SEC, EMERGENCY_FLATTEN_TTL_SEC))


def _verify_stops(ctx: Ctx, rep: Report, trade_key: str, timeout: float) -> None:
    """Every leg not DONE has its stop resting on the exchange (waits for legs still being placed)."""
    deadline = time.monotonic() + timeout
    while True:
        pos = ctx.state().position
        if pos is None or pos.trade_key != trade_key:
            rep.add("keep position", True, f"{trade_key} closed meanwhile")
            return
        try:
            ids = {o.client_order_id for o in ctx.client().open_orders(ctx.cfg.SYMBOL)}
        except Exception as e:  # noqa: BLE001 - reported as a failed check
            ids, err = set(), f"{type(e).__name__}: {e}"
        else:
            err = ""
        live = [lg for lg in pos.legs if lg.status != "DONE"]
        missing = [lg for lg in live if lg.status != "PLACED" or lg.stop_client_id not in ids]
        if live and not missing:
            for lg in live:
                rep.add(f"stop {lg.name}", True, f"{lg.stop_client_id} resting at {lg.stop_price} for "
                        f"{lg.qty - lg.filled_qty}")
            return
        if time.monotonic() > deadline:
            why = err or ", ".join(f"{lg.name} ({lg.status}, {lg.stop_client_id or 'no id'})" for lg in missing) \
                or "no legs planned yet"
            rep.add("keep position", False, f"{trade_key}: stops NOT all on the exchange: {why}")
            return
        time.sleep(0.2)  # polling interval while the exit manager places the legs


def _final_check(ctx: Ctx, rep: Report, keep_position: bool) -> None:
    st = ctx.state()
    halted = bool(ctx.r.exists(ctx.key("halt")))
    rep.add("halt flag", halted, "set: no new entries" if halted else "NOT set")
    try:
        opened = ctx.client().open_orders(ctx.cfg.SYMBOL)
    except Exception as e:  # noqa: BLE001 - reported
        rep.add("open orders", False, f"exchange unreadable: {type(e).__name__}: {e}")
        return
    ours = [o for o in opened if trade_key_of(o.client_order_id) is not None]
    tk = st.position.trade_key if st.position is not None else None
    if keep_position and tk:
        stray = [o.client_order_id for o in ours if trade_key_of(o.client_order_id) != tk]
        rep.add("open orders", not stray, f"{len(ours)} of the kept position"
                + (f"; stray: {', '.join(stray)}" if stray else ""))
    else:
        rep.add("open orders", not ours, "none of ours left" if not ours else
                "STILL OPEN: " + ", ".join(o.client_order_id for o in ours))
    if st.position is None:
        rep.add("position", True, "flat")
    elif st.position.trade_key == rep.sold_by_ctl:
        rep.add("position", True, f"flat on the exchange; the state still shows {st.position.trade_key} until the "
                "exit manager starts and books the last-resort order")
    else:
        rep.add("position", keep_position, f"{st.position.trade_key} {st.position.status}")
