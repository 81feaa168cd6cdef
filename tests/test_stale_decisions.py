"""Issue 21: no stale decision is ever acted on. A signal older than MAX_PEAK_AGE_SEC (by the stack's clock) when
the engine reads it, or priced far from SYMBOL's book, never becomes an order; a command for another trade or
past its expiry is refused, never applied later. Real processes (paper exchange, signal_ingest, position_engine,
exit_manager) on a real redis-server."""
from __future__ import annotations

import signal as sig
from decimal import Decimal

from shared.adapters.redis_streams import publish
from shared.domain.messages import Command
from tests.test_position_engine_support import make_stack_fixture  # noqa: F401  (fixture make_stack)


def test_engine_restarted_after_max_peak_age_never_sends_the_signal(make_stack):
    """The issue's restart case: the engine is down, ingest publishes a fresh line, the market moves past
    MAX_PEAK_AGE_SEC, the engine starts: no order, an event with the signal's age when the engine read it."""
    s = make_stack(MAX_PEAK_AGE_SEC="120").up("signal_ingest")
    s.wait(lambda: s.r.exists(f"{s.prefix}hb:signal_ingest"), 20, "signal_ingest heartbeat")
    s.kill("position_engine", sig.SIGTERM)
    ts = s.market_ts()
    s.append_peak("long", s.last() - 50, ts=ts)
    s.wait(lambda: s.r.xlen(f"{s.prefix}signals") == 1, 20, "ingest published the fresh signal")
    s.admin("/advance", {"to_ts": ts + 200})
    assert s.market_ts() - ts > 120
    s.start("position_engine")
    ev = s.wait_event("signal_ignored", 30)
    assert ev.data["reason"].startswith("stale_at_engine"), ev.data
    assert 120 < ev.data["age_sec"] < 400 and ev.data["max_age_sec"] == 120, ev.data
    s.wait_ready()
    assert s.entry_orders() == [] and s.events("entry_planned") == [] and s.status() is None
    # the same engine takes a fresh signal: the refusal is about age, not a stuck engine
    key = s.signal("long", s.last() - 50)
    s.wait_event("entry_planned", signal_key=key)


def test_exactly_max_peak_age_passes_one_second_more_does_not(make_stack):
    s = make_stack(MAX_PEAK_AGE_SEC="600").up()
    now = s.market_ts()
    late = s.signal("long", s.last() - 50, ts=now - 601)
    reason = s.ignored(late)
    assert reason.startswith("stale_at_engine (age 601.0s"), reason
    on_time = s.signal("long", s.last() - 50, ts=now - 600)
    s.wait_event("entry_planned", signal_key=on_time)


def test_a_signal_off_the_book_is_ignored_with_the_deviation(make_stack):
    """A price from another instrument (half of SYMBOL's) or a stuck feed (6 % off) never becomes an order;
    one within MAX_SIGNAL_DEVIATION_PCT does."""
    s = make_stack(MAX_SIGNAL_DEVIATION_PCT="0.05").up()
    last = s.last()
    for price in ((last / 2).quantize(Decimal("0.01")), (last * Decimal("1.06")).quantize(Decimal("0.01"))):
        ev = s.wait_event("signal_ignored", signal_key=s.signal("long", price))
        assert ev.data["reason"].startswith("off_book"), ev.data
        assert Decimal(str(ev.data["deviation"])) > Decimal("0.05") and Decimal(str(ev.data["book_mid"])) > 0
    assert s.entry_orders() == [] and s.status() is None
    near = s.signal("long", (last * Decimal("0.99")).quantize(Decimal("0.01")))
    s.wait_event("entry_planned", signal_key=near)


def test_a_flatten_queued_for_an_old_trade_does_not_close_a_new_one(make_stack):
    s = make_stack(ENTRY_MODE="MARKET_ONLY").up("exit_manager")
    s.signal("long", s.last())
    old = s.wait_status("OPEN_FILLED").position.trade_key
    s.command("flatten")
    s.wait(lambda: s.state().position is None, 30, "first trade flattened")
    s.kill("exit_manager", sig.SIGTERM)
    s.signal("long", s.last())
    new = s.wait_status("OPEN_FILLED").position.trade_key
    assert new != old
    s.command("flatten", trade_key=old)                    # written for the old trade, read after the new opened
    s.start("exit_manager")
    ev = s.wait_event("command_refused", 30, cmd="flatten")
    assert ev.data["reason"].startswith("other_trade") and ev.data["target"] == old and ev.trade_key == new
    assert ev.data["by"] == "pytest"
    s.wait(lambda: s.events("exit_manager_ready") and len(s.events("exit_manager_ready")) >= 2, 30, "exit_manager up")
    s.admin("/advance", {"points": 1})
    st = s.state()
    assert st.position is not None and st.position.trade_key == new and st.position.status == "OPEN_FILLED"
    assert not st.position.flatten_requested
    assert not [o for o in s.orders() if o["clientOrderId"].startswith(f"{new}-fl-")]
    assert [e for e in s.events("flatten_requested") if e.trade_key == new] == []


def test_an_expired_or_untargeted_command_is_refused(make_stack):
    s = make_stack(ENTRY_MODE="MARKET_ONLY").up("exit_manager")
    s.signal("long", s.last())
    tk = s.wait_status("OPEN_FILLED").position.trade_key
    # both consumers are down: the commands wait, and the market moves past their expiry before they are read
    s.kill("exit_manager", sig.SIGTERM)
    s.kill("position_engine", sig.SIGTERM)
    s.command("flatten", ttl=30)
    s.command("halt", "too late", ttl=30)
    s.admin("/advance", {"points": 4})                     # 60 s of market time
    s.start("exit_manager")
    s.start("position_engine")
    ev = s.wait_event("command_refused", 30, cmd="flatten")
    assert ev.data["reason"].startswith("expired") and ev.trade_key == tk
    halt = s.wait_event("command_refused", 30, cmd="halt")
    assert halt.data["reason"].startswith("expired") and not s.r.exists(f"{s.prefix}halt")
    # a command written before version 2 (no target, no expiry) is refused too, never applied
    publish(s.r, f"{s.prefix}commands", Command(cmd="flatten", at=0, by="me", v=1), 10_000)
    old = s.wait(lambda: [e for e in s.events("command_refused") if e.data.get("v") == 1], 30, "v1 refused")
    assert old[0].data["reason"].startswith("expired (no expiry")
    s.command("flatten", trade_key="")                     # v2 without a target
    s.wait(lambda: [e for e in s.events("command_refused") if e.data["reason"] == "no_target"], 30, "no_target")
    assert s.state().position.trade_key == tk and s.state().position.status == "OPEN_FILLED"
    # the same command, valid and for this trade, is applied
    s.command("flatten")
    s.wait(lambda: s.state().position is None, 30, "flattened by a valid command")


def test_replay_reports_an_off_book_signal_as_ignored_with_the_reason(tmp_path, market_bars, moment):
    """`executorctl replay` (its own stack of real processes): a line priced at half the market is `ignored`,
    reason off_book; a line at the market beside it still trades."""
    from shared.adapters.market_files import write_bars
    from tests.test_replay import peak, replay
    bars = market_bars[moment.index - 199:moment.index + 30]
    agg = tmp_path / "offbook.aggregated.csv"
    write_bars(agg, bars)
    sig = bars[199]
    signals = tmp_path / "signals.jsonl"
    signals.write_text(peak(sig.ts + 60, "long", sig.close / 2) + "\n" + peak(sig.ts + 120, "long", sig.close) + "\n")
    _res, doc = replay(tmp_path, agg, signals, "--speed", "max", "--lead", "120")
    by_line = {x["n"]: x for x in doc["signals"]}
    assert by_line[1]["outcome"] == "ignored" and "off_book" in by_line[1]["reason"], by_line[1]
    assert by_line[2]["outcome"] in ("traded", "open", "entry not filled") and by_line[2]["trade_key"], by_line[2]
