"""Invariants I1..I13, heartbeats, Redis persistence and the throttle: each fires on a crafted state and stays
quiet on a healthy one (long and short)."""
from __future__ import annotations

from decimal import Decimal as D

import msgspec
import pytest

from shared.config import load_config
from shared.domain.invariants import (
    DebtEpisode, ExchangeSnapshot, Finding, OpenOrder, Params, Throttle, check_all, check_heartbeats, check_i1,
    check_i2, check_i3, check_i4, check_i5, check_i6, check_i7, check_i8, check_i9, check_i10, check_i11,
    check_i12, check_i13, check_redis_persistence, params_from_config, split_symbol,
)
from shared.domain.position import ClosedTrade, Leg, Position, State

NOW = 1_800_000_000.0
TK = "250113-2000-L-abc123"
P = Params()
MARGIN = Params(trade_mode="margin", margin_borrow_mode="manual", margin_side_effect="NO_SIDE_EFFECT",
                i13_grace_sec=300, i13_escalate_sec=180)


def legs(side: str, tk: str = TK) -> list[Leg]:
    s = D(1) if side == "long" else D(-1)
    e = D(95000)
    stop = e - s * 190
    out = []
    for name, code, q, tp in (("tp1", "1", D("0.00035"), e + s * 190), ("tp2", "2", D("0.00035"), e + s * 380),
                              ("trail", "r", D("0.00035"), None)):
        out.append(Leg(name=name, qty=q, tp_price=tp, stop_price=stop, stop_limit=stop - s * D("0.02"),
                       status="PLACED", list_client_id=f"{tk}-o{code}-0" if tp else "",
                       tp_client_id=f"{tk}-p{code}-0" if tp else "", stop_client_id=f"{tk}-s{code}-0",
                       placed_at=NOW - 100))
    return out


def position(side: str = "long", status: str = "OPEN_FILLED", **kw) -> Position:
    s = D(1) if side == "long" else D(-1)
    e = D(95000)
    tk = kw.pop("trade_key", TK)
    base = dict(trade_key=tk, signal_key="k", symbol="BTCUSDC", side=side, status=status,
                entry_mode="LIMIT_THEN_MARKET", entry_price=e, qty=D("0.00105"), sl=e - s * 190, tp1=e + s * 190,
                tp2=e + s * 380, r=D(190), signal_price=e, signal_ts=NOW - 500, created_at=NOW - 400,
                entry_client_id=f"{tk}-en-0", entry_order_id=42, filled_qty=D("0.00105"),
                filled_quote=D("99.75"), avg_entry=e, filled_at=NOW - 300,
                legs=legs(side, tk) if status in ("OPEN_FILLED", "CLOSING") else [])
    base.update(kw)
    return Position(**base)


def state(pos: Position | None = None, **kw) -> State:
    return State(version=3, position=pos, **kw)


def orders_for(pos: Position, skip: tuple[str, ...] = ()) -> list[OpenOrder]:
    out = []
    exit_side = "SELL" if pos.side == "long" else "BUY"
    for leg in pos.legs:
        if leg.name in skip:
            continue
        if leg.tp_client_id:
            out.append(OpenOrder(client_order_id=leg.tp_client_id, type="LIMIT_MAKER", side=exit_side, qty=leg.qty,
                                 price=leg.tp_price))
        out.append(OpenOrder(client_order_id=leg.stop_client_id, type="STOP_LOSS_LIMIT", side=exit_side,
                             qty=leg.qty, price=leg.stop_limit, stop_price=leg.stop_price))
    return out


def snap(pos: Position | None = None, skip: tuple[str, ...] = (), **kw) -> ExchangeSnapshot:
    base = dict(open_orders=orders_for(pos, skip) if pos else [], feed_readable=True, feed_last_bar_ts=NOW - 90)
    base.update(kw)
    return ExchangeSnapshot(**base)


def checks(fs: list[Finding]) -> set[tuple[str, str]]:
    return {(f.check, f.severity) for f in fs}


# ---- healthy ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("side", ["long", "short"])
@pytest.mark.parametrize("status", ["PENDING", "OPEN", "OPEN_FILLED"])
def test_healthy_positions_are_quiet(side, status):
    pos = position(side, status, entry_order_id=0 if status == "PENDING" else 42)
    r = check_all(state(pos), snap(pos), NOW, MARGIN, None)
    assert r.findings == [] and not r.halt


def test_empty_state_is_quiet():
    assert check_all(State(), None, NOW, P, None).findings == []
    assert check_all(State(), ExchangeSnapshot(), NOW, MARGIN, None).findings == []


@pytest.mark.parametrize("side", ["long", "short"])
def test_healthy_trailing_position_is_quiet(side):
    pos = position(side, trailing=True, trail_last_at=NOW - 5, be_done=True)
    for leg in pos.legs[:2]:
        leg.status = "DONE"
        leg.exit_reason = "tp"
    sn = snap(pos, skip=("tp1", "tp2"))
    assert check_all(state(pos), sn, NOW, P, None).findings == []


# ---- I1 ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("side", ["long", "short"])
def test_i1_stop_missing_in_state_warn_in_grace_error_after(side):
    pos = position(side)
    pos.legs[1].stop_client_id = ""
    assert checks(check_i1(state(pos), None, NOW, P)) == {("I1", "ERROR")}
    pos.filled_at = NOW - 5
    assert checks(check_i1(state(pos), None, NOW, P)) == {("I1", "WARN")}
    pos.legs[1].stop_client_id = f"{TK}-s2-0"
    pos.legs[0].stop_price = D(0)
    assert checks(check_i1(state(pos), None, NOW, P)) == {("I1", "WARN")}


@pytest.mark.parametrize("side", ["long", "short"])
def test_i1_no_stop_on_exchange_is_critical_with_age(side):
    pos = position(side)
    fs = check_i1(state(pos), snap(pos, skip=("trail",)), NOW, P)
    assert checks(fs) == {("I1", "CRITICAL")}
    assert fs[0].details["legs"] == ["trail"] and fs[0].details["age_sec"] == 300
    assert fs[0].trade_key == TK
    # no open orders at all
    fs = check_i1(state(pos), ExchangeSnapshot(open_orders=[]), NOW, P)
    assert checks(fs) == {("I1", "CRITICAL")} and len(fs[0].details["legs"]) == 3
    # inside grace: WARN
    pos.filled_at = NOW - 3
    assert checks(check_i1(state(pos), ExchangeSnapshot(open_orders=[]), NOW, P)) == {("I1", "WARN")}


def test_i1_done_legs_and_cancelled_orders():
    pos = position()
    pos.legs[2].status = "DONE"
    assert check_i1(state(pos), snap(pos, skip=("trail",)), NOW, P) == []
    sn = snap(pos)
    sn.open_orders = [msgspec.structs.replace(o, status="CANCELED") if o.client_order_id.endswith("-s1-0") else o
                      for o in sn.open_orders]
    assert checks(check_i1(state(pos), sn, NOW, P)) == {("I1", "CRITICAL")}


def test_i1_replacing_leg_gets_grace_from_its_placement():
    pos = position()
    pos.legs[2].status = "REPLACING"
    pos.legs[2].placed_at = NOW - 2
    assert checks(check_i1(state(pos), snap(pos, skip=("trail",)), NOW, P)) == {("I1", "WARN")}
    pos.legs[2].placed_at = NOW - 60
    assert checks(check_i1(state(pos), snap(pos, skip=("trail",)), NOW, P)) == {("I1", "CRITICAL")}


def test_i1_orders_gone_and_no_free_coins_is_a_fill_not_yet_settled():
    pos = position("long")
    gone = snap(pos, skip=("tp1",))
    gone.free_base = D("0")          # the OCO filled: its coins are sold
    assert check_i1(state(pos), gone, NOW, P) == []
    gone.free_base = D("0.0000364")  # dust of earlier trades is free, far below the leg: still a settled fill
    assert check_i1(state(pos), gone, NOW, P) == []
    gone.free_base = pos.legs[0].qty  # the leg's coins are there and no order backs them: unprotected
    assert checks(check_i1(state(pos), gone, NOW, P)) == {("I1", "CRITICAL")}


def test_i1_only_for_filled():
    pos = position(status="OPEN")
    assert check_i1(state(pos), ExchangeSnapshot(open_orders=[]), NOW, P) == []


# ---- I2 ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("side", ["long", "short"])
def test_i2_wrong_order_is_error(side):
    pos = position(side)
    pos.tp1, pos.tp2 = pos.tp2, pos.tp1
    assert checks(check_i2(state(pos), None, NOW, P)) == {("I2", "ERROR")}
    pos = position(side)
    pos.sl = pos.tp1
    assert checks(check_i2(state(pos), None, NOW, P)) == {("I2", "ERROR")}


@pytest.mark.parametrize("side", ["long", "short"])
def test_i2_missing_price_is_warn(side):
    pos = position(side, tp2=D(0))
    assert checks(check_i2(state(pos), None, NOW, P)) == {("I2", "WARN")}


@pytest.mark.parametrize("side", ["long", "short"])
def test_i2_break_even_after_tp1_within_tolerance(side):
    s = D(1) if side == "long" else D(-1)
    pos = position(side)
    for leg in pos.legs[1:]:
        leg.stop_price = pos.entry_price + s * D("0.05")
    # before TP1 a stop at entry is wrong
    assert checks(check_i2(state(pos), None, NOW, P)) == {("I2", "ERROR")}
    pos.be_done = True
    assert check_i2(state(pos), None, NOW, P) == []
    pos.sl = pos.entry_price
    assert check_i2(state(pos), None, NOW, P) == []
    for leg in pos.legs[1:]:
        leg.stop_price = pos.entry_price + s * D("0.5")  # beyond tolerance
    assert checks(check_i2(state(pos), None, NOW, P)) == {("I2", "ERROR")}


# ---- I3 ----------------------------------------------------------------------------------------------------

def test_i3_sum_mismatch_and_small_leg():
    pos = position()
    pos.legs[0].qty = D("0.00036")
    assert check_i3(state(pos), None, NOW, P) == []  # within one step
    pos.legs[0].qty = D("0.00050")
    assert checks(check_i3(state(pos), None, NOW, P)) == {("I3", "ERROR")}
    pos = position()
    pos.legs[0].qty, pos.legs[2].qty = D("0.000001"), D("0.000699")
    assert checks(check_i3(state(pos), None, NOW, P)) == {("I3", "ERROR")}


def test_i3_short_legs_grossed_up_by_the_commission_add_up_to_exit_qty():
    pos = position("short")
    legs = sum((leg.qty for leg in pos.legs), D(0))
    for leg in pos.legs:
        leg.qty += D("0.00002")               # the exits buy back more than was sold: commission in BTC
    assert checks(check_i3(state(pos), None, NOW, P)) == {("I3", "ERROR")}
    pos.exit_qty = legs + D("0.00006")        # what the exit manager planned
    assert check_i3(state(pos), None, NOW, P) == []


def test_i3_degraded_split_with_zero_leg_is_fine():
    pos = position(filled_qty=D("0.0001"))
    pos.legs[0].qty, pos.legs[1].qty, pos.legs[2].qty = D("0.00005"), D("0.00005"), D(0)
    assert check_i3(state(pos), None, NOW, P) == []
    pos.legs[0].qty, pos.legs[1].qty = D("0.0001"), D(0)
    assert check_i3(state(pos), None, NOW, P) == []
    pos.legs[0].qty = D(0)
    assert checks(check_i3(state(pos), None, NOW, P)) == {("I3", "ERROR")}


# ---- I4 ----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value,status", [("entry_client_id", "", "PENDING"), ("entry_mode", "", "OPEN"),
                                                ("entry_price", D(0), "PENDING"), ("qty", D(0), "OPEN"),
                                                ("entry_order_id", 0, "OPEN")])
def test_i4_incomplete_entry(field, value, status):
    pos = position(status=status, **{field: value})
    assert checks(check_i4(state(pos), None, NOW, P)) == {("I4", "ERROR")}


def test_i4_pending_without_order_id_is_fine():
    assert check_i4(state(position(status="PENDING", entry_order_id=0)), None, NOW, P) == []


# ---- I5 / I9 -----------------------------------------------------------------------------------------------

def test_i5_trailing_without_leg_or_qty_is_error():
    pos = position(trailing=True, trail_last_at=NOW - 5)
    pos.legs[2].qty = D(0)
    assert checks(check_i5(state(pos), None, NOW, P)) == {("I5", "ERROR")}
    pos.legs = pos.legs[:2]
    assert checks(check_i5(state(pos), None, NOW, P)) == {("I5", "ERROR")}


def test_i5_trailing_without_update_time_is_warn():
    pos = position(trailing=True, trail_last_at=0.0)
    assert checks(check_i5(state(pos), None, NOW, P)) == {("I5", "WARN")}
    assert check_i5(state(position(trailing=False)), None, NOW, P) == []


def test_i9_trail_stop_missing():
    pos = position(trailing=True, trail_last_at=NOW - 100)
    pos.legs[2].stop_client_id = ""
    assert checks(check_i9(state(pos), None, NOW, P)) == {("I9", "ERROR")}
    pos.trail_last_at = NOW - 1
    pos.legs[2].placed_at = NOW - 1
    assert checks(check_i9(state(pos), None, NOW, P)) == {("I9", "WARN")}
    pos = position(trailing=True, trail_last_at=NOW - 100)
    assert check_i9(state(pos), snap(pos), NOW, P) == []
    assert checks(check_i9(state(pos), snap(pos, skip=("trail",)), NOW, P)) == {("I9", "ERROR")}


# ---- I6 ----------------------------------------------------------------------------------------------------

def test_i6_feed():
    pos = position()
    assert check_i6(state(pos), snap(pos), NOW, P) == []
    assert checks(check_i6(state(pos), snap(pos, feed_last_bar_ts=NOW - 1000), NOW, P)) == {("I6", "WARN")}
    assert checks(check_i6(state(pos), snap(pos, feed_readable=False, feed_error="missing"), NOW, P)) == {
        ("I6", "WARN")}
    assert checks(check_i6(state(pos), snap(pos, feed_configured=False), NOW, P)) == {("I6", "WARN")}
    assert checks(check_i6(state(pos), snap(pos, feed_last_bar_ts=None), NOW, P)) == {("I6", "WARN")}
    # no filled position: the feed does not matter
    assert check_i6(state(position(status="OPEN")), snap(None, feed_readable=False), NOW, P) == []


# ---- I7 / I8 -----------------------------------------------------------------------------------------------

def test_i7_tp_ids():
    pos = position()
    pos.legs[0].tp_client_id = ""
    assert checks(check_i7(state(pos), None, NOW, P)) == {("I7", "ERROR")}
    pos.filled_at = NOW - 1
    assert checks(check_i7(state(pos), None, NOW, P)) == {("I7", "WARN")}
    pos.trailing = True
    assert check_i7(state(pos), None, NOW, P) == []


def test_i8_legs():
    pos = position()
    pos.legs = []
    assert checks(check_i8(state(pos), None, NOW, P)) == {("I8", "ERROR")}
    pos.filled_at = NOW - 1
    assert checks(check_i8(state(pos), None, NOW, P)) == {("I8", "WARN")}
    assert check_i8(state(position()), None, NOW, P) == []


# ---- I10 / I11 / I12 ---------------------------------------------------------------------------------------

def test_i10_errors():
    pos = position()
    pos.legs[2].errors = 2
    assert check_i10(state(pos), None, NOW, P) == []
    pos.legs[2].errors = 3
    assert checks(check_i10(state(pos), None, NOW, P)) == {("I10", "WARN")}
    pos.legs[2].errors = 6
    assert checks(check_i10(state(pos), None, NOW, P)) == {("I10", "ERROR")}


def test_i11_margin_config():
    s = State()
    assert check_i11(s, None, NOW, Params(trade_mode="spot", margin_side_effect="MARGIN_BUY")) == []
    assert check_i11(s, None, NOW, MARGIN) == []
    assert checks(check_i11(s, None, NOW, Params(trade_mode="margin", margin_borrow_mode="manual",
                                                  margin_side_effect="AUTO_BORROW_REPAY"))) == {("I11", "WARN")}
    assert check_i11(s, None, NOW, Params(trade_mode="margin", margin_borrow_mode="auto",
                                          margin_side_effect="AUTO_BORROW_REPAY")) == []
    assert checks(check_i11(s, None, NOW, Params(trade_mode="margin", margin_borrow_mode="auto",
                                                  margin_side_effect="NO_SIDE_EFFECT"))) == {("I11", "WARN")}


def test_i12_trade_key_consistency():
    pos = position()
    assert check_i12(state(pos), None, NOW, P) == []
    pos.legs[1].stop_client_id = "250101-0000-S-ffffff-s2-0"
    fs = check_i12(state(pos), None, NOW, P)
    assert checks(fs) == {("I12", "WARN")} and "tp2.stop" in fs[0].details["ids"]
    pos = position(entry_client_id="other-en-0")
    assert checks(check_i12(state(pos), None, NOW, P)) == {("I12", "WARN")}
    lc = closed(legs=legs("long", "someone-else"))
    assert checks(check_i12(State(last_closed=lc), None, NOW, P)) == {("I12", "WARN")}
    assert check_i12(State(last_closed=closed(legs=legs("long"))), None, NOW, P) == []


# ---- I13 ---------------------------------------------------------------------------------------------------

def closed(closed_at: float = NOW - 400, **kw) -> ClosedTrade:
    base = dict(trade_key=TK, symbol="BTCUSDC", side="long", qty=D("0.00105"), avg_entry=D(95000),
                avg_exit=D(95190), pnl_quote=D("0.2"), r_multiple=D(1), exit_reason="tp", opened_at=NOW - 1000,
                closed_at=closed_at)
    base.update(kw)
    return ClosedTrade(**base)


def test_i13_not_margin_or_clean_is_quiet():
    s = State(last_closed=closed())
    assert check_i13(s, ExchangeSnapshot(margin_debts={"USDC": D(50)}), NOW, P, None).findings == []
    r = check_i13(s, ExchangeSnapshot(margin_debts={"USDC": D(0), "BTC": D(0), "ETH": D(3)}), NOW, MARGIN, None)
    assert r.findings == [] and r.episode is None and not r.halt


def test_i13_waits_grace_after_close():
    s = State(last_closed=closed(closed_at=NOW - 100))
    r = check_i13(s, ExchangeSnapshot(margin_debts={"USDC": D(50)}), NOW, MARGIN, None)
    assert r.findings == [] and r.episode is None


def test_i13_warn_then_error_then_kill():
    s = State(last_closed=closed())
    sn = ExchangeSnapshot(margin_debts={"USDC": D("50.1")})
    r = check_i13(s, sn, NOW, MARGIN, None)
    assert checks(r.findings) == {("I13", "WARN")} and r.episode.first_seen == NOW and not r.halt
    ep = msgspec.json.decode(msgspec.json.encode(r.episode), type=DebtEpisode)  # survives persistence
    r = check_i13(s, sn, NOW + 100, MARGIN, ep)
    assert checks(r.findings) == {("I13", "WARN")} and r.episode.first_seen == NOW
    r = check_i13(s, sn, NOW + 200, MARGIN, r.episode)
    assert checks(r.findings) == {("I13", "ERROR")} and not r.halt
    kill = msgspec.structs.replace(MARGIN, kill_on_debt=True)
    r = check_i13(s, sn, NOW + 200, kill, r.episode)
    assert checks(r.findings) == {("I13", "ERROR")} and r.halt and "USDC 50.1" in r.halt_reason
    assert r.episode.killed
    r = check_i13(s, sn, NOW + 300, kill, r.episode)  # decided once per episode
    assert checks(r.findings) == {("I13", "ERROR")} and not r.halt


def test_i13_eps_and_clear():
    s = State(last_closed=closed())
    eps = msgspec.structs.replace(MARGIN, margin_debt_eps=D("0.01"))
    assert check_i13(s, ExchangeSnapshot(margin_debts={"BTC": D("0.001")}), NOW, eps, None).findings == []
    ep = DebtEpisode(trade_key=TK, first_seen=NOW - 50, last_seen=NOW - 10)
    clean = ExchangeSnapshot(margin_debts={"BTC": D(0)})
    assert check_i13(s, clean, NOW, MARGIN, ep).episode == ep
    clear = msgspec.structs.replace(MARGIN, i13_clear_on_exchange_clear=True)
    assert check_i13(s, clean, NOW, clear, ep).episode is None


def test_i13_disabled_or_unavailable_is_warn():
    s = State(last_closed=closed())
    off = msgspec.structs.replace(MARGIN, i13_exchange_check=False)
    assert checks(check_i13(s, ExchangeSnapshot(), NOW, off, None).findings) == {("I13", "WARN")}
    r = check_i13(s, ExchangeSnapshot(errors={"margin_debts": "timeout"}), NOW, MARGIN, None)
    assert checks(r.findings) == {("I13", "WARN")} and "timeout" in r.findings[0].message


def test_i13_new_position_borrowing_is_not_leftover():
    s = State(last_closed=closed(), position=position(trade_key="250114-0000-S-000000"))
    r = check_i13(s, ExchangeSnapshot(margin_debts={"USDC": D(50)}), NOW, MARGIN, None)
    assert r.findings == []


# ---- heartbeats, redis, params ------------------------------------------------------------------------------

def test_heartbeats():
    fs = check_heartbeats({"a": {"ts": NOW - 1}, "b": None, "c": NOW - 30, "d": {"ts": NOW - 9}}, NOW, 10)
    assert {f.subject for f in fs} == {"b", "c"} and all(f.severity == "CRITICAL" and f.check == "HB" for f in fs)
    assert check_heartbeats({"a": NOW}, NOW, 10) == []


def test_redis_persistence():
    ok = {"aof_enabled": 1, "aof_last_write_status": "ok", "rdb_last_bgsave_status": "ok"}
    assert check_redis_persistence(ok) == []
    assert check_redis_persistence({"aof_enabled": 0, "aof_last_write_status": "err",
                                    "rdb_last_bgsave_status": "ok"}) == []
    fs = check_redis_persistence({"aof_enabled": 1, "aof_last_write_status": "err", "rdb_last_bgsave_status": "err"})
    assert checks(fs) == {("REDIS", "ERROR")} and {f.subject for f in fs} == {"aof", "rdb"}


def test_params_from_config_and_alias():
    cfg = load_config({"TRADE_MODE": "margin", "MARGIN_BORROW_MODE": "manual", "MARGIN_SIDE_EFFECT": "NO_SIDE_EFFECT",
                       "I13_KILL_ON_DEBT": "1", "SYMBOL": "ETHUSDT"})
    p = params_from_config(cfg)
    assert p.kill_on_debt and p.trade_mode == "margin" and p.assets == ("ETH", "USDT")
    assert split_symbol("BTCFDUSD") == ("BTC", "FDUSD") and split_symbol("XYZ") == ()


# ---- throttle -----------------------------------------------------------------------------------------------

def f(sev: str, check: str = "I1", tk: str = TK, subject: str = "") -> Finding:
    return Finding(check=check, severity=sev, message="m", trade_key=tk, subject=subject)


def test_throttle_once_per_window_per_key():
    t = Throttle(600)
    assert t.filter([f("WARN")], NOW) == [f("WARN")]
    assert t.filter([f("WARN")], NOW + 10) == []
    assert t.filter([f("WARN", tk="other"), f("WARN", check="I2")], NOW + 20) == [f("WARN", tk="other"),
                                                                                 f("WARN", check="I2")]
    assert t.filter([f("WARN")], NOW + 600) == [f("WARN")]


def test_throttle_escalation_never_throttled_and_state_persists():
    t = Throttle(600)
    assert t.filter([f("WARN")], NOW) == [f("WARN")]
    assert t.filter([f("ERROR")], NOW + 1) == [f("ERROR")]
    assert t.filter([f("CRITICAL")], NOW + 2) == [f("CRITICAL")]
    assert t.filter([f("CRITICAL")], NOW + 3) == []
    t2 = Throttle(600, msgspec.json.decode(msgspec.json.encode(t.state)))
    assert t2.filter([f("CRITICAL"), f("ERROR"), f("WARN")], NOW + 4) == []
    assert t2.filter([f("CRITICAL")], NOW + 700) == [f("CRITICAL")]


def test_throttle_prunes():
    t = Throttle(10, max_keys=4)
    for i in range(10):
        t.filter([f("WARN", tk=f"t{i}")], NOW + i * 0.1)
    t.prune(NOW + 2)
    assert len(t.state) <= 4 and "I1|t9||WARN" in t.state
    t.prune(NOW + 100)
    assert t.state == {}


# ---- throttle properties ------------------------------------------------------------------------------------

from hypothesis import given, settings, strategies as st  # noqa: E402

SEVS = ["INFO", "WARN", "ERROR", "CRITICAL"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(SEVS), st.sampled_from(["I1", "I2"]), st.floats(0, 50)), max_size=40))
def test_throttle_properties(seq):
    """Never the same (check, severity) twice within the window unless it is an escalation over the last
    emitted severity; an escalation is always emitted."""
    t = Throttle(100)
    now = NOW
    emitted: dict[tuple[str, str], float] = {}
    last_sev: dict[str, tuple[str, float]] = {}
    for sev, check, dt in seq:
        now += dt
        fnd = f(sev, check=check)
        prev = last_sev.get(check)
        escalation = prev is not None and SEVS.index(sev) > SEVS.index(prev[0]) and now - prev[1] < 100
        out = t.filter([fnd], now)
        if escalation:
            assert out == [fnd]
        if out:
            key = (check, sev)
            assert escalation or key not in emitted or now - emitted[key] >= 100
            emitted[key] = now
            last_sev[check] = (sev, now)
        else:
            assert (check, sev) in emitted and now - emitted[(check, sev)] < 100
