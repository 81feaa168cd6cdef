"""`executorctl status`: processes, halt flag, the position with its legs and unrealised PnL, the exchange's open
orders against what the state expects, streams and consumer lag, last alerts. One screen, or --json."""
from __future__ import annotations

import time
from decimal import Decimal
from typing import Any

import msgspec
import redis

from services.executorctl.ctx import PROCESSES, STREAMS, Ctx, decode_row, fmt_dur, fmt_ts, human, jsonable
from shared.adapters.heartbeat import read_all
from shared.domain.messages import Alert
from shared.domain.order_ids import trade_key_of
from shared.domain.position import ENGINE_PHASES, Position, net_qty

ZERO = Decimal(0)


def processes(ctx: Ctx) -> list[dict[str, Any]]:
    """Each process's heartbeat: alive, age (wall seconds), pid."""
    now = time.time()
    out = []
    for name, hb in read_all(ctx.r, ctx.cfg.EXEC_PREFIX, list(PROCESSES)).items():
        if hb is None:
            out.append({"process": name, "alive": False, "age_sec": None, "pid": None})
            continue
        age = now - hb.ts
        out.append({"process": name, "alive": age <= ctx.cfg.HEARTBEAT_TTL_SEC, "age_sec": round(age, 2),
                    "pid": hb.pid})
    return out


def alive(ctx: Ctx, process: str) -> bool:
    """True when `process` has a fresh heartbeat."""
    return next(p["alive"] for p in processes(ctx) if p["process"] == process)


def halt_flag(ctx: Ctx) -> dict[str, Any] | None:
    """The halt flag's JSON (who, why, when), None when not halted."""
    raw = ctx.r.get(ctx.key("halt"))
    if raw is None:
        return None
    try:
        doc = msgspec.json.decode(raw)
        return doc if isinstance(doc, dict) else {"value": doc}
    except msgspec.DecodeError:
        return {"value": raw.decode(errors="replace")}


def held(p: Position) -> Decimal:
    """What the exits still have to trade: the planned exit quantity (a short's is grossed up by the buy's
    commission; before the legs are planned, the net fill) less what the legs and flatten already traded."""
    total = p.exit_qty if p.exit_qty > 0 else net_qty(p)
    return total - sum((lg.filled_qty for lg in p.legs), ZERO) - p.flatten_qty


def expected_orders(p: Position | None) -> dict[str, str]:
    """Client ids the state expects to rest on the exchange -> what each is."""
    if p is None:
        return {}
    out: dict[str, str] = {}
    if p.status in ENGINE_PHASES and p.entry_client_id:
        out[p.entry_client_id] = "entry"
    for lg in p.legs:
        if lg.status in ("PLACED",):
            if lg.tp_client_id:
                out[lg.tp_client_id] = f"{lg.name} take-profit"
            if lg.stop_client_id:
                out[lg.stop_client_id] = f"{lg.name} stop"
    return out


def position_view(ctx: Ctx, p: Position, book: tuple[Decimal, Decimal] | None) -> dict[str, Any]:
    """The position as an operator wants it, with unrealised PnL at the exchange's book (bid for a long, ask
    for a short: what closing now would get)."""
    sign = 1 if p.side == "long" else -1
    entry = p.avg_entry if p.avg_entry > 0 else p.entry_price
    h = held(p) if p.filled_qty > 0 else ZERO
    view: dict[str, Any] = {
        "trade_key": p.trade_key, "side": p.side, "status": p.status, "entry_planned": p.entry_price,
        "avg_entry": p.avg_entry, "qty_planned": p.qty, "filled_qty": p.filled_qty, "held": h, "stop": p.sl,
        "tp1": p.tp1, "tp2": p.tp2, "r": p.r, "trailing": p.trailing, "be_done": p.be_done,
        "flatten_requested": p.flatten_requested, "entry_client_id": p.entry_client_id,
        "filled_at": p.filled_at or None, "created_at": p.created_at,
        "legs": [{"name": lg.name, "status": lg.status, "qty": lg.qty, "filled": lg.filled_qty, "tp": lg.tp_price,
                  "stop": lg.stop_price, "attempt": lg.attempt, "exit_reason": lg.exit_reason,
                  "tp_client_id": lg.tp_client_id, "stop_client_id": lg.stop_client_id} for lg in p.legs],
    }
    stops = [lg.stop_price for lg in p.legs if lg.status != "DONE"]
    if stops:
        view["stop"] = max(stops) if p.side == "long" else min(stops)
    realised = sum((lg.filled_quote - entry * lg.filled_qty for lg in p.legs), ZERO) * sign
    view["realised_quote"] = realised.quantize(Decimal("0.0001"))
    if book is not None:
        bid, ask = book
        px = bid if p.side == "long" else ask
        view["mark"] = px
        upnl = sign * (px - entry) * h
        view["unrealised_quote"] = upnl.quantize(Decimal("0.0001"))
        risk = p.r * h
        view["unrealised_r"] = (upnl / risk).quantize(Decimal("0.001")) if risk > 0 else ZERO
    return view


def streams(ctx: Ctx) -> list[dict[str, Any]]:
    """Length of each stream and, per consumer group, pending entries and lag."""
    out = []
    for name in STREAMS:
        key = ctx.key(name)
        length = ctx.r.xlen(key)
        groups = []
        if length or ctx.r.exists(key):
            try:
                for g in ctx.r.xinfo_groups(key):
                    gname = g["name"].decode() if isinstance(g["name"], bytes) else g["name"]
                    groups.append({"group": gname, "consumers": g.get("consumers"), "pending": g.get("pending"),
                                   "lag": g.get("lag")})
            except redis.ResponseError:
                pass
        out.append({"stream": name, "length": length, "groups": groups})
    return out


def last_alerts(ctx: Ctx, n: int = 5) -> list[dict[str, Any]]:
    rows = ctx.r.xrevrange(ctx.key("alerts"), "+", "-", count=n)
    out = []
    for _id, fields in reversed(rows):
        m = decode_row(fields)
        if isinstance(m, Alert):
            out.append({"at": m.at, "check": m.check, "severity": m.severity, "message": m.message,
                        "trade_key": m.trade_key})
    return out


def gather(ctx: Ctx) -> dict[str, Any]:
    """Everything `status` shows, as data."""
    cfg = ctx.cfg
    st = ctx.state()
    now = ctx.clock.now()
    doc: dict[str, Any] = {
        "symbol": cfg.SYMBOL, "prefix": cfg.EXEC_PREFIX, "clock": cfg.CLOCK, "now": now,
        "processes": processes(ctx), "halt": halt_flag(ctx),
        "state_version": st.version, "closed_count": st.closed_count,
        "cooldown_left_sec": max(0.0, st.cooldown_until - now), "lock_left_sec": max(0.0, st.lock_until - now),
        "last_closed": None, "position": None, "exchange": {}, "streams": streams(ctx), "alerts": last_alerts(ctx),
        "problems": [], "loss_limits": loss_limits_view(cfg, st, now),
    }
    if st.last_closed is not None:
        lc = st.last_closed
        doc["last_closed"] = {"trade_key": lc.trade_key, "side": lc.side, "pnl_quote": lc.pnl_quote,
                              "r": lc.r_multiple, "reason": lc.exit_reason, "closed_at": lc.closed_at}
    book = None
    ex: dict[str, Any] = {"reachable": True}
    try:
        client = ctx.client()
        book = client.book_ticker(cfg.SYMBOL)
        ex["bid"], ex["ask"] = book
        opened = client.open_orders(cfg.SYMBOL)
    except Exception as e:  # noqa: BLE001 - any failure to read the exchange is shown, not raised
        ex = {"reachable": False, "error": f"{type(e).__name__}: {e}"[:300]}
        opened = None
    expected = expected_orders(st.position)
    if opened is not None:
        ids = {o.client_order_id for o in opened}
        ex["open_orders"] = [{"client_id": o.client_order_id, "type": o.type, "side": o.side, "price": o.price,
                              "stop": o.stop_price, "qty": o.orig_qty, "filled": o.executed_qty, "status": o.status,
                              "ours": trade_key_of(o.client_order_id) is not None,
                              "expected_as": expected.get(o.client_order_id, "")} for o in opened]
        ex["missing"] = [{"client_id": cid, "what": what} for cid, what in expected.items() if cid not in ids]
        ex["unexpected"] = [o.client_order_id for o in opened if o.client_order_id not in expected]
    doc["exchange"] = ex
    if st.position is not None:
        doc["position"] = position_view(ctx, st.position, book)
    # What an operator must look at.
    for p in doc["processes"]:
        if not p["alive"] and p["process"] in set(cfg.WATCHDOG_PROCESSES) | {"position_engine", "exit_manager",
                                                                              "watchdog"}:
            doc["problems"].append(f"{p['process']} has no heartbeat")
    if not ex["reachable"]:
        doc["problems"].append("exchange unreachable")
    for m in ex.get("missing", []):
        doc["problems"].append(f"expected order {m['client_id']} ({m['what']}) is not open on the exchange")
    pos = st.position
    if pos is not None and pos.status == "OPEN_FILLED" and not pos.flatten_requested and opened is not None:
        ids = {o.client_order_id for o in opened}
        for lg in pos.legs:
            if lg.status != "DONE" and lg.stop_client_id not in ids:
                msg = f"leg {lg.name} ({lg.status}) has no stop on the exchange"
                if msg not in doc["problems"]:
                    doc["problems"].append(msg)
    doc["healthy"] = not doc["problems"]
    return doc


def loss_limits_view(cfg: Any, st: Any, now: float) -> dict[str, Any]:
    """The loss limits (issue 22), how far the UTC day is from each, and a latched trip's reason."""
    from shared.domain.loss_limits import LossLimits, headroom
    rows = headroom(st.day, LossLimits.of(cfg), now)
    return {"latched": st.day.latched, "limits": [{"setting": a, "limit": b, "now": c} for a, b, c in rows]}


def _num(v: Any) -> str:
    if v is None or v == "":
        return "-"
    return human(v)


def render(ctx: Ctx, doc: dict[str, Any]) -> None:
    """One screen for a person."""
    out = ctx.out
    _render_header(out, doc)
    _render_position(out, doc)
    _render_exchange(out, doc)
    _render_streams_alerts(out, doc)


def _render_header(out: Any, doc: dict[str, Any]) -> None:
    """Processes, halt, state version, cooldown / lock and loss limits."""
    clock = f"{fmt_ts(doc['now'])} UTC ({doc['clock']} clock)"
    out.heading(f"executor {doc['symbol']}  prefix {doc['prefix']}  {clock}")
    out.table(["process", "state", "heartbeat age", "pid"],
              [[p["process"], "alive" if p["alive"] else "DOWN", fmt_dur(p["age_sec"]), p["pid"] or "-"]
               for p in doc["processes"]],
              styles=["green" if p["alive"] else "bold red" for p in doc["processes"]])
    h = doc["halt"]
    if h:
        out.line(f"HALTED: no new entries (by {h.get('by', '?')}: {h.get('reason', '') or '-'}, "
                 f"since {fmt_ts(h.get('at'))})", "bold yellow")
    else:
        out.line("halt: off (new entries allowed)", "green")
    extra = []
    if doc["cooldown_left_sec"] > 0:
        extra.append(f"cooldown {fmt_dur(doc['cooldown_left_sec'])} left")
    if doc["lock_left_sec"] > 0:
        extra.append(f"lock {fmt_dur(doc['lock_left_sec'])} left")
    out.line(f"state version {doc['state_version']}, {doc['closed_count']} trades closed"
             + (", " + ", ".join(extra) if extra else ""))
    ll = doc["loss_limits"]
    out.line("loss limits: " + "; ".join(f"{r['setting']} {r['limit']} ({r['now']})" for r in ll["limits"])
             + (f"  LATCHED: {ll['latched']}" if ll["latched"] else ""), "bold red" if ll["latched"] else "")


def _render_position(out: Any, doc: dict[str, Any]) -> None:
    """The position and its legs, and the last closed trade."""
    out.heading("position")
    p = doc["position"]
    if p is None:
        out.line("flat: no position")
    else:
        out.line(f"{p['trade_key']}  {p['side'].upper()}  {p['status']}"
                 + (f"  FLATTEN requested ({p['flatten_requested']})" if p["flatten_requested"] else ""),
                 "bold")
        entry = p["avg_entry"] if p["avg_entry"] else p["entry_planned"]
        out.line(f"entry {_num(entry)}  qty {_num(p['filled_qty'])}/{_num(p['qty_planned'])}  held {_num(p['held'])}"
                 f"  stop {_num(p['stop'])}  TP1 {_num(p['tp1'])}  TP2 {_num(p['tp2'])}  R {_num(p['r'])}")
        out.line(f"trailing {'on' if p['trailing'] else 'off'}  break-even {'done' if p['be_done'] else 'no'}"
                 f"  realised {_num(p['realised_quote'])}")
        if "unrealised_quote" in p:
            u = p["unrealised_quote"]
            out.line(f"unrealised {_num(u)} quote ({_num(p['unrealised_r'])} R) at {_num(p['mark'])}",
                     "green" if u >= 0 else "red")
        if p["legs"]:
            out.table(["leg", "status", "qty", "filled", "take-profit", "stop", "attempt", "exit"],
                      [[lg["name"], lg["status"], _num(lg["qty"]), _num(lg["filled"]), _num(lg["tp"]),
                        _num(lg["stop"]), lg["attempt"], lg["exit_reason"] or "-"] for lg in p["legs"]])
    lc = doc["last_closed"]
    if lc:
        out.line(f"last closed: {lc['trade_key']} {lc['side']} {lc['reason']} PnL {_num(lc['pnl_quote'])} "
                 f"({_num(lc['r'])} R) at {fmt_ts(lc['closed_at'])}")


def _render_exchange(out: Any, doc: dict[str, Any]) -> None:
    """The book, the open orders and what is missing on the exchange."""
    out.heading("exchange")
    ex = doc["exchange"]
    if not ex["reachable"]:
        out.line(f"UNREACHABLE: {ex['error']}", "bold red")
    else:
        out.line(f"book bid {_num(ex['bid'])} ask {_num(ex['ask'])}; {len(ex['open_orders'])} open orders")
        if ex["open_orders"]:
            out.table(["client id", "type", "side", "price", "stop", "qty", "expected as"],
                      [[o["client_id"], o["type"], o["side"], _num(o["price"]), _num(o["stop"]), _num(o["qty"]),
                        o["expected_as"] or ("UNEXPECTED" if o["ours"] else "not ours")] for o in ex["open_orders"]],
                      styles=["" if o["expected_as"] else "yellow" for o in ex["open_orders"]])
        for m in ex["missing"]:
            out.line(f"MISSING on the exchange: {m['client_id']} ({m['what']})", "bold red")


def _render_streams_alerts(out: Any, doc: dict[str, Any]) -> None:
    """The streams' groups, the last alerts, and what needs attention."""
    out.heading("streams")
    rows = []
    for s in doc["streams"]:
        if not s["groups"]:
            rows.append([s["stream"], s["length"], "-", "-", "-"])
        for g in s["groups"]:
            rows.append([s["stream"], s["length"], g["group"], _num(g["pending"]), _num(g["lag"])])
    out.table(["stream", "length", "group", "pending", "lag"], rows)
    out.heading("last alerts")
    if not doc["alerts"]:
        out.line("none")
    for a in doc["alerts"]:
        out.line(f"[{fmt_ts(a['at'])}] {a['severity']:<8} {a['check']:<5} {a['message']}",
                 {"CRITICAL": "bold red", "ERROR": "red", "WARN": "yellow"}.get(a["severity"], ""))
    if doc["problems"]:
        out.heading("attention")
        for pr in doc["problems"]:
            out.line(f"! {pr}", "bold red")
    else:
        out.line("all good", "bold green")


def run(ctx: Ctx) -> int:
    doc = gather(ctx)
    if ctx.out.as_json:
        ctx.out.json(jsonable(doc))
    else:
        render(ctx, doc)
    return 0 if doc["healthy"] else 1
