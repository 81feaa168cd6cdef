"""Loss limits that latch (issue 22 section 2): each limit trips on the real stack (real Redis, the paper exchange,
the services as processes), halts new entries with its reason while exits keep protecting, stays, and is cleared
only by `executorctl resume`. The pure tally rules are tested beside them."""
from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal

import msgspec
import pytest

from shared.config import ConfigError, load_config
from shared.domain import loss_limits as LL
from shared.domain.position import ClosedTrade
from tests.test_executorctl import ctl
from tests.test_exit_manager_support import make, open_long, price, wait_closed  # noqa: F401 - make is a fixture

DAY1 = datetime(2025, 1, 13, 23, 50, tzinfo=UTC).timestamp()
DAY2 = DAY1 + 20 * 60  # 00:10 the next UTC day


def closed(key: str, pnl: str, at: float, qty: str = "0.001", entry: str = "100000", exit_: str = "100000") -> ClosedTrade:
    return ClosedTrade(trade_key=key, symbol="BTCUSDC", side="long", qty=Decimal(qty), avg_entry=Decimal(entry),
                       avg_exit=Decimal(exit_), pnl_quote=Decimal(pnl), r_multiple=Decimal(0), exit_reason="stop",
                       opened_at=at - 60, closed_at=at)


# ---- the pure rules --------------------------------------------------------------------------------------------

def test_net_pnl_counts_both_commissions():
    # 0.001 BTC at 100000 in and out: 100 quote each way; 0.1 % of each is 0.1
    assert LL.net_pnl(closed("a", "-0.5", DAY1), Decimal("0.001")) == Decimal("-0.7")
    # spot: the entry's commission was taken in BTC (0.000002 at 100000 = 0.2 quote), the exit's in quote
    base_fee = msgspec.structs.replace(closed("a", "1", DAY1), entry_fee_base=Decimal("0.000002"))
    assert LL.net_pnl(base_fee, Decimal("0.001")) == Decimal("1") - Decimal("0.2") - Decimal("0.1")


def test_tally_counts_a_trade_once_and_rolls_the_day_but_keeps_streak_and_latch():
    lim = LL.LossLimits(max_consecutive_losses=2)
    t = LL.record_close(LL.DayTally(), closed("a", "-1", DAY1), Decimal(0))
    assert (t.trades, t.consecutive_losses, t.net_pnl) == (1, 1, Decimal(-1))
    assert LL.record_close(t, closed("a", "-1", DAY1), Decimal(0)) is None, "a trade counted twice"
    t = LL.latch(LL.record_close(t, closed("b", "-1", DAY2), Decimal(0)), lim)
    assert t.day == "2025-01-14" and t.trades == 1 and t.net_pnl == Decimal(-1), "a new UTC day starts at zero"
    assert t.consecutive_losses == 2 and t.latched.startswith("MAX_CONSECUTIVE_LOSSES")
    later = LL.roll_day(t, DAY2 + 86400 * 3)
    assert later.latched == t.latched, "a latch never clears itself at midnight"
    won = LL.record_close(later, closed("c", "2", DAY2 + 86400 * 3), Decimal(0))
    assert won.consecutive_losses == 0 and won.latched == t.latched
    resumed = LL.resume(t)
    assert resumed.latched == "" and resumed.consecutive_losses == 0 and resumed.trades == 1


@pytest.mark.parametrize("limits, tally, trips", [
    (LL.LossLimits(max_daily_loss=Decimal(5)), LL.DayTally(net_pnl=Decimal("-4.99")), ""),
    (LL.LossLimits(max_daily_loss=Decimal(5)), LL.DayTally(net_pnl=Decimal("-5")), "MAX_DAILY_LOSS_USD"),
    (LL.LossLimits(max_trades_per_day=3), LL.DayTally(trades=2), ""),
    (LL.LossLimits(max_trades_per_day=3), LL.DayTally(trades=3), "MAX_TRADES_PER_DAY"),
    (LL.LossLimits(max_consecutive_losses=3), LL.DayTally(consecutive_losses=3), "MAX_CONSECUTIVE_LOSSES"),
    (LL.LossLimits(), LL.DayTally(net_pnl=Decimal(-1000), trades=99, consecutive_losses=99), ""),
])
def test_each_limit_trips_at_its_bound_and_zero_is_off(limits, tally, trips):
    assert LL.tripped(tally, limits).split(":")[0] == trips


@pytest.mark.parametrize("name", ["MAX_DAILY_LOSS_USD", "MAX_CONSECUTIVE_LOSSES", "MAX_TRADES_PER_DAY"])
def test_a_negative_limit_stops_start_up_naming_it(name):
    with pytest.raises(ConfigError, match=name):
        load_config({name: "-1"})
    assert getattr(load_config({}), name) == 0, "limits must be off by default"


# ---- on the real stack -------------------------------------------------------------------------------------------

def _lose_one(s) -> str:
    pos = open_long(s)
    price(s, pos.sl)
    wait_closed(s)
    s.wait(lambda: s.state().day.last_trade_key == pos.trade_key, 20, "the closed trade counted in the tally")
    return pos.trade_key


def _halt(s) -> dict | None:
    raw = s.r.get(f"{s.prefix}halt")
    return json.loads(raw) if raw else None


@pytest.mark.parametrize("env, losses, reason", [
    ({"MAX_DAILY_LOSS_USD": "0.05"}, 1, "MAX_DAILY_LOSS_USD"),
    ({"MAX_TRADES_PER_DAY": "1"}, 1, "MAX_TRADES_PER_DAY"),
    ({"MAX_CONSECUTIVE_LOSSES": "2"}, 2, "MAX_CONSECUTIVE_LOSSES"),
])
def test_a_tripped_limit_halts_latches_and_only_resume_clears_it(make, env, losses, reason):
    s = make(COOLDOWN_SEC="0", LOCK_SEC="0", **env)
    for i in range(losses):
        assert _halt(s) is None, f"halted after {i} losses, before the limit"
        _lose_one(s)
    halt = s.wait(lambda: _halt(s), 20, "the halt set by the loss limit")
    assert halt["by"] == "loss_limits" and halt["reason"].startswith(reason), halt
    assert s.state().day.latched.startswith(reason)
    assert s.state().day.net_pnl < 0 and s.state().day.trades == losses
    tripped = [e for e in s.events("halt_set") if e.data.get("by") == "loss_limits"]
    assert len(tripped) == 1, "the trip is recorded (and alerted) once"
    # later signals are refused with the reason halted; nothing is sent
    entries = len([o for o in s.orders() if "-en-" in o["clientOrderId"]])
    s.append_peak("long", Decimal(s.admin("/state")["last"]))
    s.wait(lambda: [e for e in s.events("signal_ignored") if e.data.get("reason") == "halted"], 20,
           "the next signal refused while halted")
    assert len([o for o in s.orders() if "-en-" in o["clientOrderId"]]) == entries
    status = json.loads(ctl(s, "status", "--json").stdout)
    assert status["loss_limits"]["latched"].startswith(reason)
    assert ctl(s, "resume", "--reason", "reviewed").returncode == 0
    assert _halt(s) is None and s.state().day.latched == ""
    price(s, Decimal(s.admin("/state")["last"]) + 7)   # a new price: the refused signal's twin would be a duplicate
    pos = open_long(s, legs_resting=False)
    assert pos.trade_key not in {e.trade_key for e in s.events("day_tally")}, "no new entry after resume"


# ---- the original settings parsed here (issue 22 section 5) ----------------------------------------------------

@pytest.mark.parametrize("name", ["POLL_SEC", "MANAGE_EVERY_SEC", "LIVE_STATUS_POLL_EVERY", "SNAPSHOT_MIN_SEC",
                                  "RECON_THROTTLE_SEC", "ORPHAN_CANCEL_EVERY_SEC", "LOG_MAX_LINES"])
def test_a_negative_cadence_or_log_size_stops_start_up_naming_it(name):
    with pytest.raises(ConfigError, match=name):
        load_config({name: "-1"})


def test_the_exit_side_original_settings_parse_with_the_originals_defaults():
    cfg = load_config({})
    assert (cfg.TRAIL_SOURCE, cfg.SL_WATCHDOG_GRACE_SEC, cfg.SL_WATCHDOG_RETRY_SEC) == ("AGG", 3, 5)
    assert load_config({"TRAIL_SOURCE": "binance"}).TRAIL_SOURCE == "BINANCE"
    with pytest.raises(ConfigError, match="TRAIL_SOURCE"):
        load_config({"TRAIL_SOURCE": "mid"})
