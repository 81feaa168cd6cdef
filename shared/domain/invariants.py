"""Invariants I1..I13 of the original Executor, as pure functions of (state, exchange snapshot, now, params).

Nothing here does I/O: the watchdog service reads Redis, the exchange and the feed, builds an
`ExchangeSnapshot`, calls these functions and writes what they return (alerts, events, the halt flag).

Each `check_iN` returns a list of `Finding`s (empty = healthy). I13 also needs a tiny persisted
"episode" (when the leftover debt was first seen), so `check_i13` takes it and returns the new one,
plus a kill decision. The findings' throttle is the one alert throttle, `shared.domain.alert_throttle.Throttle`.

Severity: INFO < WARN < ERROR < CRITICAL. "Grace" (INVAR_GRACE_SEC) is measured from the state change the
check is about (fill time for I1/I7/I8, last trailing update for I9): inside it a finding is a WARN.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal, Mapping

import msgspec

from shared.domain.alert_throttle import SEV_RANK, Throttle  # noqa: F401 - the one table and throttle, re-exported
from shared.domain.position import Leg, Position, State
from shared.domain.symbol import split_symbol

Severity = Literal["INFO", "WARN", "ERROR", "CRITICAL"]

# Order statuses that mean "still resting on the exchange".
_LIVE_ORDER_STATUSES = frozenset({"NEW", "PARTIALLY_FILLED", "PENDING_NEW"})
_STOP_TYPES = frozenset({"STOP_LOSS", "STOP_LOSS_LIMIT", "STOP_MARKET", "STOP"})


class Finding(msgspec.Struct, frozen=True, kw_only=True):
    """One invariant violation. `subject` narrows the throttle key (a leg name, a process name, an asset)."""
    check: str
    severity: Severity
    message: str
    trade_key: str = ""
    subject: str = ""
    details: dict[str, Any] = {}


class OpenOrder(msgspec.Struct, frozen=True, kw_only=True):
    """One open order on the exchange, as far as the invariants care."""
    client_order_id: str
    type: str
    side: str
    qty: Decimal
    price: Decimal = Decimal(0)
    stop_price: Decimal = Decimal(0)
    status: str = "NEW"


class ExchangeSnapshot(msgspec.Struct, kw_only=True):
    """What the watchdog saw outside the state document. None = not fetched (or the fetch failed; `errors`
    then says why, keyed by `open_orders` / `margin_debts`)."""
    open_orders: list[OpenOrder] | None = None
    open_orders_at: float = 0.0
    margin_debts: dict[str, Decimal] | None = None   # asset -> borrowed + interest
    margin_debts_at: float = 0.0
    free_base: Decimal | None = None   # base asset not locked by any order (a long's coins without an order)
    feed_configured: bool = True
    feed_readable: bool = False
    feed_last_bar_ts: float | None = None
    feed_error: str = ""
    errors: dict[str, str] = {}


class Params(msgspec.Struct, frozen=True, kw_only=True):
    """The settings the checks need (build with `params_from_config`)."""
    grace_sec: float = 15
    feed_stale_sec: float = 180
    qty_step: Decimal = Decimal("0.00001")
    min_qty: Decimal = Decimal("0.00001")
    be_tolerance: Decimal = Decimal("0.1")
    trade_mode: str = "spot"
    margin_borrow_mode: str = "manual"
    margin_side_effect: str = "AUTO_BORROW_REPAY"
    margin_debt_eps: Decimal = Decimal(0)
    i13_grace_sec: float = 300
    i13_escalate_sec: float = 180
    i13_exchange_check: bool = True
    i13_clear_on_exchange_clear: bool = False
    kill_on_debt: bool = False
    symbol: str = "BTCUSDC"
    assets: tuple[str, ...] = ("BTC", "USDC")


def params_from_config(cfg: Any) -> Params:
    """Params from a `shared.config.Config` (duck-typed so this module imports no adapters)."""
    return Params(
        grace_sec=cfg.INVAR_GRACE_SEC, feed_stale_sec=cfg.INVAR_FEED_STALE_SEC, qty_step=cfg.QTY_STEP,
        min_qty=cfg.MIN_QTY, be_tolerance=cfg.I2_BE_TOLERANCE_USD, trade_mode=cfg.TRADE_MODE,
        margin_borrow_mode=cfg.MARGIN_BORROW_MODE, margin_side_effect=cfg.MARGIN_SIDE_EFFECT,
        margin_debt_eps=cfg.MARGIN_DEBT_EPS, i13_grace_sec=cfg.I13_GRACE_SEC, i13_escalate_sec=cfg.I13_ESCALATE_SEC,
        i13_exchange_check=cfg.I13_EXCHANGE_CHECK, i13_clear_on_exchange_clear=cfg.I13_CLEAR_STATE_ON_EXCHANGE_CLEAR,
        kill_on_debt=cfg.INVAR_KILL_ON_DEBT, symbol=cfg.SYMBOL, assets=split_symbol(cfg.SYMBOL),
    )


# ---- helpers ---------------------------------------------------------------------------------------------


def _live_legs(pos: Position) -> list[Leg]:
    """Legs that still hold quantity on the exchange (not DONE, qty > 0)."""
    return [leg for leg in pos.legs if leg.status != "DONE" and leg.qty > 0]


def _graded(now: float, since: float, grace: float, after: Severity = "ERROR") -> Severity:
    return "WARN" if since > 0 and now - since < grace else after


def _open_ids(snapshot: ExchangeSnapshot | None) -> set[str] | None:
    if snapshot is None or snapshot.open_orders is None:
        return None
    return {o.client_order_id for o in snapshot.open_orders if o.status in _LIVE_ORDER_STATUSES}


def _open_stop_ids(snapshot: ExchangeSnapshot | None) -> set[str] | None:
    if snapshot is None or snapshot.open_orders is None:
        return None
    return {o.client_order_id for o in snapshot.open_orders
            if o.status in _LIVE_ORDER_STATUSES and (o.type in _STOP_TYPES or o.stop_price > 0)}


def _f(check: str, severity: Severity, message: str, pos: Position | None = None, subject: str = "",
       **details: Any) -> Finding:
    return Finding(check=check, severity=severity, message=message, trade_key=pos.trade_key if pos else "",
                   subject=subject, details=details)


def _s(v: Any) -> str:
    return str(v)


# ---- I1..I12 ----------------------------------------------------------------------------------------------


def check_i1(state: State, snapshot: ExchangeSnapshot | None, now: float, p: Params) -> list[Finding]:
    """I1: a filled position has a stop on every live leg (in the state; and on the exchange when the snapshot
    has open orders). Missing on the exchange after grace is CRITICAL: the position is unprotected."""
    pos = state.position
    if pos is None or pos.status != "OPEN_FILLED":
        return []
    out: list[Finding] = []
    age = round(now - pos.filled_at, 3) if pos.filled_at else None
    for leg in _live_legs(pos):
        if not leg.stop_client_id or leg.stop_price <= 0:
            out.append(_f("I1", _graded(now, pos.filled_at, p.grace_sec),
                          f"leg {leg.name} of a filled position has no stop in the state "
                          f"(stop_client_id={leg.stop_client_id!r}, stop_price={leg.stop_price})",
                          pos, leg.name, leg=leg.name, age_sec=age, leg_status=leg.status))
    stops = _open_stop_ids(snapshot)
    if stops is None:
        return out
    unprotected = [leg for leg in _live_legs(pos) if leg.stop_client_id not in stops]
    if unprotected and _sold_not_settled(pos, unprotected, snapshot, p):
        return out
    if unprotected:
        # A stop being moved (REPLACING) may be absent for a moment: grace from its placement too.
        in_grace = (pos.filled_at > 0 and now - pos.filled_at < p.grace_sec) or all(
            leg.status == "REPLACING" and now - leg.placed_at < p.grace_sec for leg in unprotected)
        qty = sum((leg.qty for leg in unprotected), Decimal(0))
        out.append(_f("I1", "WARN" if in_grace else "CRITICAL",
                      f"filled position has {len(unprotected)} leg(s) ({', '.join(leg.name for leg in unprotected)}) "
                      f"with no open stop order on the exchange, qty {qty} unprotected, age "
                      f"{age if age is not None else '?'} s", pos, "exchange",
                      legs=[leg.name for leg in unprotected], unprotected_qty=_s(qty), age_sec=age,
                      stop_client_ids=[leg.stop_client_id for leg in unprotected]))
    return out


def _sold_not_settled(pos: Position, unprotected: list[Leg], snap: ExchangeSnapshot, p: Params) -> bool:
    """A long's legs whose orders are gone while no coins are free: they filled (a take-profit or their stop)
    and the exit manager has not recorded it yet. Coins that are free are not backed by any order: those are
    really unprotected."""
    if pos.side != "long" or snap.free_base is None:
        return False
    # Dust of earlier trades stays free in the account: compare with what one missing leg would hold.
    return snap.free_base < min(leg.qty - leg.filled_qty for leg in unprotected)


def check_i2(state: State, snapshot: ExchangeSnapshot | None, now: float, p: Params) -> list[Finding]:
    """I2: exit prices present and ordered (long sl < entry < tp1 < tp2, short mirrored); after TP1 a stop at
    break-even within I2_BE_TOLERANCE_USD is allowed: at the average fill (where the break-even stop goes; a
    fill worse than planned puts it past the planned entry) or at the planned entry."""
    pos = state.position
    if pos is None:
        return []
    prices = {"sl": pos.sl, "entry": pos.entry_price, "tp1": pos.tp1, "tp2": pos.tp2}
    missing = [k for k, v in prices.items() if v is None or v <= 0]
    if missing:
        return [_f("I2", "WARN", f"exit prices incomplete: {', '.join(missing)} missing", pos, "prices",
                   **{k: _s(v) for k, v in prices.items()})]
    sl, entry, tp1, tp2 = pos.sl, pos.entry_price, pos.tp1, pos.tp2
    sign = Decimal(1) if pos.side == "long" else Decimal(-1)
    tol = p.be_tolerance
    after_tp1 = pos.be_done or any(leg.name == "tp1" and leg.status == "DONE" and leg.exit_reason == "tp"
                                   for leg in pos.legs)
    be_refs = ((entry, pos.avg_entry) if pos.avg_entry > 0 else (entry,)) if after_tp1 else ()
    problems: list[str] = []
    if not (sign * tp1 > sign * entry and sign * tp2 > sign * tp1):
        problems.append("take-profits not beyond entry in order")
    sl_ok = sign * sl < sign * entry or _near_any(sl, be_refs, tol)
    if not sl_ok and not pos.trailing:
        problems.append("stop-loss not on the losing side of entry")
    if not pos.trailing:
        for leg in _live_legs(pos):
            if leg.name == "trail" or leg.stop_price <= 0:
                continue
            ok = sign * leg.stop_price < sign * entry or _near_any(leg.stop_price, be_refs, tol)
            if not ok:
                problems.append(f"leg {leg.name} stop {leg.stop_price} not on the losing side of entry"
                                + ("" if after_tp1 else " before TP1"))
    if problems:
        side = "sl < entry < tp1 < tp2" if pos.side == "long" else "sl > entry > tp1 > tp2"
        return [_f("I2", "ERROR", f"{pos.side} exit prices out of order ({side} expected): " + "; ".join(problems),
                   pos, "prices", after_tp1=after_tp1, **{k: _s(v) for k, v in prices.items()})]
    return []


def _near_any(price: Decimal, refs: tuple[Decimal, ...], tol: Decimal) -> bool:
    """Whether `price` is within `tol` of one of `refs` (I2's break-even references; none before TP1)."""
    return any(abs(price - ref) <= tol for ref in refs)


def check_i3(state: State, snapshot: ExchangeSnapshot | None, now: float, p: Params) -> list[Finding]:
    """I3: the legs' quantities add up to what the exits must trade within one step (the filled quantity; for
    a short grossed up by the commission: `exit_qty`), each leg >= MIN_QTY (a leg of 0 is allowed: the split
    degrades to 50/50/0 or 100/0/0)."""
    pos = state.position
    if pos is None or pos.status not in ("OPEN_FILLED", "CLOSING") or not pos.legs:
        return []
    total = pos.exit_qty if pos.exit_qty > 0 else (pos.filled_qty if pos.filled_qty > 0 else pos.qty)
    legs_sum = sum((leg.qty for leg in pos.legs), Decimal(0))
    problems: list[str] = []
    if abs(legs_sum - total) > p.qty_step:
        problems.append(f"legs sum {legs_sum} != filled qty {total} (step {p.qty_step})")
    small = [f"{leg.name}={leg.qty}" for leg in pos.legs if leg.qty != 0 and leg.qty < p.min_qty]
    if small:
        problems.append(f"legs below MIN_QTY {p.min_qty}: {', '.join(small)}")
    if any(leg.qty < 0 for leg in pos.legs):
        problems.append("negative leg quantity")
    if all(leg.qty == 0 for leg in pos.legs):
        problems.append("every leg is 0")
    if problems:
        return [_f("I3", "ERROR", "quantity accounting broken: " + "; ".join(problems), pos, "qty",
                   legs={leg.name: _s(leg.qty) for leg in pos.legs}, filled_qty=_s(total))]
    return []


def check_i4(state: State, snapshot: ExchangeSnapshot | None, now: float, p: Params) -> list[Finding]:
    """I4: a PENDING/OPEN position has its entry client id, entry mode, entry price > 0 and qty > 0 (and, once
    OPEN, the exchange's order id)."""
    pos = state.position
    if pos is None or pos.status not in ("PENDING", "OPEN"):
        return []
    missing = []
    if not pos.entry_client_id:
        missing.append("entry_client_id")
    if not pos.entry_mode:
        missing.append("entry_mode")
    if pos.entry_price <= 0:
        missing.append("entry_price>0")
    if pos.qty <= 0:
        missing.append("qty>0")
    if pos.status == "OPEN" and not pos.entry_order_id:
        missing.append("entry_order_id")
    if missing:
        return [_f("I4", "ERROR", f"{pos.status} position lacks {', '.join(missing)}", pos, "entry",
                   status=pos.status, missing=missing)]
    return []


def _trail_leg(pos: Position) -> Leg | None:
    return next((leg for leg in pos.legs if leg.name == "trail"), None)


def check_i5(state: State, snapshot: ExchangeSnapshot | None, now: float, p: Params) -> list[Finding]:
    """I5: trailing is sane: a trail leg with qty > 0 (ERROR), a stop price, a last-update time and a status
    that can trail (WARN)."""
    pos = state.position
    if pos is None or not pos.trailing:
        return []
    leg = _trail_leg(pos)
    if leg is None or leg.qty <= 0:
        return [_f("I5", "ERROR", "trailing is active but the trail leg is " +
                   ("missing" if leg is None else f"of qty {leg.qty}"), pos, "qty")]
    out: list[Finding] = []
    problems = []
    if leg.stop_price <= 0 and leg.status != "REPLACING":
        problems.append("no stop price (and no replacement under way)")
    if pos.trail_last_at <= 0:
        problems.append("no last-update time")
    if pos.status not in ("OPEN_FILLED", "CLOSING"):
        problems.append(f"status {pos.status} cannot trail")
    if problems:
        out.append(_f("I5", "WARN", "trailing state inconsistent: " + "; ".join(problems), pos, "state",
                      stop_price=_s(leg.stop_price), trail_last_at=pos.trail_last_at, status=pos.status))
    return out


def check_i6(state: State, snapshot: ExchangeSnapshot | None, now: float, p: Params) -> list[Finding]:
    """I6: the aggregated.csv feed used for trailing is configured, readable and fresh while a position is
    filled or trailing."""
    pos = state.position
    if pos is None or not (pos.trailing or pos.status == "OPEN_FILLED") or snapshot is None:
        return []
    if not snapshot.feed_configured:
        return [_f("I6", "WARN", "trailing feed (AGG_CSV) is not configured", pos, "feed")]
    if not snapshot.feed_readable:
        return [_f("I6", "WARN", f"trailing feed is not readable: {snapshot.feed_error or 'unknown error'}",
                   pos, "feed")]
    last = snapshot.feed_last_bar_ts
    if last is None:
        return [_f("I6", "WARN", "trailing feed has no bars", pos, "feed")]
    age = now - last
    if age > p.feed_stale_sec:
        return [_f("I6", "WARN", f"trailing feed is stale: last bar {age:.0f} s old (limit {p.feed_stale_sec} s)",
                   pos, "feed", last_bar_ts=last, age_sec=round(age, 1))]
    return []


def check_i7(state: State, snapshot: ExchangeSnapshot | None, now: float, p: Params) -> list[Finding]:
    """I7: a filled position that is not trailing has a take-profit order id on its live tp1/tp2 legs."""
    pos = state.position
    if pos is None or pos.status != "OPEN_FILLED" or pos.trailing:
        return []
    missing = [leg.name for leg in _live_legs(pos) if leg.name in ("tp1", "tp2") and not leg.tp_client_id]
    if missing:
        return [_f("I7", _graded(now, pos.filled_at, p.grace_sec),
                   f"take-profit order id missing on {', '.join(missing)}", pos, "tp", legs=missing)]
    return []


def check_i8(state: State, snapshot: ExchangeSnapshot | None, now: float, p: Params) -> list[Finding]:
    """I8: a filled position has its exit legs."""
    pos = state.position
    if pos is None or pos.status != "OPEN_FILLED" or pos.legs:
        return []
    return [_f("I8", _graded(now, pos.filled_at, p.grace_sec), "filled position has no exit legs", pos, "legs",
               age_sec=round(now - pos.filled_at, 3) if pos.filled_at else None)]


def check_i9(state: State, snapshot: ExchangeSnapshot | None, now: float, p: Params) -> list[Finding]:
    """I9: trailing is active but the trail leg's stop is missing (in the state, or not open on the exchange)."""
    pos = state.position
    if pos is None or not pos.trailing:
        return []
    leg = _trail_leg(pos)
    if leg is None or leg.qty <= 0 or leg.status == "DONE":
        return []
    since = max(pos.trail_last_at, leg.placed_at)
    if not leg.stop_client_id or leg.stop_price <= 0:
        return [_f("I9", _graded(now, since, p.grace_sec), "trailing is active but the trail stop is missing "
                   "in the state", pos, "trail", stop_client_id=leg.stop_client_id)]
    ids = _open_ids(snapshot)
    if ids is not None and leg.stop_client_id not in ids:
        return [_f("I9", _graded(now, since, p.grace_sec), f"trailing is active but the trail stop "
                   f"{leg.stop_client_id} is not open on the exchange", pos, "trail",
                   stop_client_id=leg.stop_client_id)]
    return []


def check_i10(state: State, snapshot: ExchangeSnapshot | None, now: float, p: Params) -> list[Finding]:
    """I10: repeated stop/trailing placement errors on a leg: WARN from 3, ERROR from 6."""
    pos = state.position
    if pos is None:
        return []
    out = []
    for leg in pos.legs:
        if leg.errors >= 3:
            out.append(_f("I10", "ERROR" if leg.errors >= 6 else "WARN",
                          f"leg {leg.name} had {leg.errors} placement errors", pos, leg.name,
                          leg=leg.name, errors=leg.errors))
    return out


def check_i11(state: State, snapshot: ExchangeSnapshot | None, now: float, p: Params) -> list[Finding]:
    """I11 (margin only): MARGIN_BORROW_MODE manual needs MARGIN_SIDE_EFFECT NO_SIDE_EFFECT, auto needs
    AUTO_BORROW_REPAY (MARGIN_BUY borrows but never repays, so it is warned about too)."""
    if p.trade_mode != "margin":
        return []
    need = "NO_SIDE_EFFECT" if p.margin_borrow_mode == "manual" else "AUTO_BORROW_REPAY"
    if p.margin_side_effect != need:
        return [_f("I11", "WARN", f"MARGIN_BORROW_MODE={p.margin_borrow_mode} expects MARGIN_SIDE_EFFECT={need}, "
                   f"got {p.margin_side_effect}", None, "margin_config",
                   borrow_mode=p.margin_borrow_mode, side_effect=p.margin_side_effect)]
    return []


def check_i12(state: State, snapshot: ExchangeSnapshot | None, now: float, p: Params) -> list[Finding]:
    """I12: the trade key is consistent: every client id of the position (and of the last closed trade's legs)
    is `<trade_key>-<leg>-<attempt>`."""
    out = []
    subjects: list[tuple[str, list[tuple[str, str]], Position | None]] = []
    pos = state.position
    if pos is not None:
        ids = [("entry", pos.entry_client_id)]
        for leg in pos.legs:
            ids += [(f"{leg.name}.list", leg.list_client_id), (f"{leg.name}.tp", leg.tp_client_id),
                    (f"{leg.name}.stop", leg.stop_client_id)]
        subjects.append((pos.trade_key, ids, pos))
    lc = state.last_closed
    if lc is not None:
        ids = []
        for leg in lc.legs:
            ids += [(f"{leg.name}.list", leg.list_client_id), (f"{leg.name}.tp", leg.tp_client_id),
                    (f"{leg.name}.stop", leg.stop_client_id)]
        subjects.append((lc.trade_key, ids, None))
    for tk, ids, _ in subjects:
        if not tk:
            out.append(Finding(check="I12", severity="WARN", message="position has an empty trade key",
                               subject="trade_key"))
            continue
        bad = {name: cid for name, cid in ids if cid and not cid.startswith(tk + "-")}
        if bad:
            out.append(Finding(check="I12", severity="WARN", trade_key=tk, subject="ids",
                               message=f"client ids not of trade {tk}: " +
                               ", ".join(f"{k}={v}" for k, v in bad.items()), details={"ids": bad}))
    return out


# ---- I13 ---------------------------------------------------------------------------------------------------


class DebtEpisode(msgspec.Struct, kw_only=True):
    """Persisted between runs: leftover debt of a closed trade, first seen at `first_seen` (clock time)."""
    trade_key: str
    first_seen: float
    last_seen: float
    debts: dict[str, str] = {}
    killed: bool = False


class I13Result(msgspec.Struct, kw_only=True):
    """Findings, the episode to persist (None = none/cleared) and the kill decision."""
    findings: list[Finding] = []
    episode: DebtEpisode | None = None
    halt: bool = False
    halt_reason: str = ""


def check_i13(state: State, snapshot: ExchangeSnapshot | None, now: float, p: Params,
              episode: DebtEpisode | None) -> I13Result:
    """I13 (margin only): after a close, no debt above MARGIN_DEBT_EPS remains for the symbol's assets.

    Waits I13_GRACE_SEC after the close; WARN when debt is seen, ERROR once it has persisted
    I13_ESCALATE_SEC; with INVAR_KILL_ON_DEBT the first such ERROR of an episode comes with halt=True (once: an
    operator who resumes is not overridden; the episode remembers `killed`). WARN when the exchange check
    is disabled or unavailable. A clean exchange clears the episode only with I13_CLEAR_STATE_ON_EXCHANGE_CLEAR.
    """
    if p.trade_mode != "margin":
        return I13Result(episode=episode)
    lc = state.last_closed
    if lc is None:
        return I13Result(episode=episode)
    if state.position is not None and state.position.trade_key != lc.trade_key:
        return I13Result(episode=None)  # a new trade may legitimately borrow: its debt is not leftover
    if episode is not None and episode.trade_key != lc.trade_key:
        episode = None
    since_close = now - lc.closed_at
    if since_close < p.i13_grace_sec:
        return I13Result(episode=episode)
    if not p.i13_exchange_check:
        return I13Result(episode=episode, findings=[Finding(
            check="I13", severity="WARN", trade_key=lc.trade_key, subject="disabled",
            message="I13 exchange debt check is disabled (I13_EXCHANGE_CHECK=0): leftover margin debt "
                    "after a close would go unnoticed")])
    debts = snapshot.margin_debts if snapshot is not None else None
    if debts is None:
        why = (snapshot.errors.get("margin_debts", "") if snapshot is not None else "") or "not fetched"
        return I13Result(episode=episode, findings=[Finding(
            check="I13", severity="WARN", trade_key=lc.trade_key, subject="unavailable",
            message=f"I13 exchange debt check unavailable: {why}")])
    assets = set(p.assets)
    over = {a: d for a, d in debts.items() if (not assets or a in assets) and d > p.margin_debt_eps}
    if not over:
        if episode is not None and p.i13_clear_on_exchange_clear:
            return I13Result(episode=None)
        return I13Result(episode=episode)
    if episode is None:
        episode = DebtEpisode(trade_key=lc.trade_key, first_seen=now, last_seen=now)
    persisted = now - episode.first_seen
    episode = DebtEpisode(trade_key=episode.trade_key, first_seen=episode.first_seen, last_seen=now,
                          debts={a: str(d) for a, d in over.items()}, killed=episode.killed)
    debt_txt = ", ".join(f"{a} {d}" for a, d in sorted(over.items()))
    details = {"debts": {a: str(d) for a, d in over.items()}, "closed_at": lc.closed_at,
               "first_seen": episode.first_seen, "persisted_sec": round(persisted, 1),
               "eps": str(p.margin_debt_eps)}
    if persisted < p.i13_escalate_sec:
        return I13Result(episode=episode, findings=[Finding(
            check="I13", severity="WARN", trade_key=lc.trade_key, subject="debt", details=details,
            message=f"margin debt left after close of {lc.trade_key}: {debt_txt}")])
    halt = p.kill_on_debt and not episode.killed  # decide once per episode: never fight an operator's resume
    reason = (f"I13: margin debt {debt_txt} left after close of {lc.trade_key} for {persisted:.0f} s "
              f"(> I13_ESCALATE_SEC {p.i13_escalate_sec:g})") if halt else ""
    if halt:
        episode.killed = True
    return I13Result(episode=episode, halt=halt, halt_reason=reason, findings=[Finding(
        check="I13", severity="ERROR", trade_key=lc.trade_key, subject="debt", details={**details, "halt": halt},
        message=f"margin debt persists after close of {lc.trade_key}: {debt_txt} for {persisted:.0f} s"
                + ("; halting new entries (INVAR_KILL_ON_DEBT)" if halt else ""))])


# ---- all, heartbeats, redis ---------------------------------------------------------------------------------

CHECKS = (check_i1, check_i2, check_i3, check_i4, check_i5, check_i6, check_i7, check_i8, check_i9, check_i10,
          check_i11, check_i12)


def check_all(state: State, snapshot: ExchangeSnapshot | None, now: float, p: Params,
              episode: DebtEpisode | None) -> I13Result:
    """Every invariant: I1..I12 findings plus I13's, with I13's episode and kill decision."""
    findings: list[Finding] = []
    for check in CHECKS:
        findings.extend(check(state, snapshot, now, p))
    r13 = check_i13(state, snapshot, now, p, episode)
    return I13Result(findings=findings + list(r13.findings), episode=r13.episode, halt=r13.halt,
                     halt_reason=r13.halt_reason)


def check_heartbeats(heartbeats: Mapping[str, Any], now: float, deadline_sec: float) -> list[Finding]:
    """CRITICAL per process whose heartbeat is missing (None) or older than `deadline_sec` (wall time).
    A heartbeat is anything with a `ts` attribute, a dict with "ts", or a number (the ts itself)."""
    out = []
    for proc, hb in heartbeats.items():
        ts = _hb_ts(hb)
        if ts is None:
            out.append(Finding(check="HB", severity="CRITICAL", subject=proc, details={"process": proc},
                               message=f"process {proc} has no heartbeat (dead or never started)"))
        elif now - ts > deadline_sec:
            out.append(Finding(check="HB", severity="CRITICAL", subject=proc,
                               details={"process": proc, "last_ts": ts, "age_sec": round(now - ts, 1)},
                               message=f"process {proc} heartbeat is {now - ts:.0f} s old (deadline {deadline_sec} s)"))
    return out


def _hb_ts(hb: Any) -> float | None:
    if hb is None:
        return None
    if isinstance(hb, (int, float)):
        return float(hb)
    if isinstance(hb, Mapping):
        return float(hb["ts"]) if hb.get("ts") is not None else None
    ts = getattr(hb, "ts", None)
    return float(ts) if ts is not None else None


def check_redis_persistence(info: Mapping[str, Any]) -> list[Finding]:
    """ERROR when Redis reports a failed AOF write or RDB save (INFO persistence); quiet when healthy or
    when persistence is simply not configured."""
    out = []
    if str(info.get("aof_enabled", 0)) == "1" and str(info.get("aof_last_write_status", "ok")) != "ok":
        out.append(Finding(check="REDIS", severity="ERROR", subject="aof",
                           message=f"Redis AOF write failing: aof_last_write_status={info.get('aof_last_write_status')}",
                           details={"aof_last_write_status": str(info.get("aof_last_write_status"))}))
    if str(info.get("rdb_last_bgsave_status", "ok")) != "ok":
        out.append(Finding(check="REDIS", severity="ERROR", subject="rdb",
                           message=f"Redis RDB save failing: rdb_last_bgsave_status={info.get('rdb_last_bgsave_status')}",
                           details={"rdb_last_bgsave_status": str(info.get("rdb_last_bgsave_status"))}))
    return out
