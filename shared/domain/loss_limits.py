"""Loss limits that latch (issue 22): the day's tally of closed trades and the pure rules that trip a halt.

The tally lives in the state document (`State.day`), updated by `record_close` when a trade closes; a tripped
limit latches (`DayTally.latched`) until an operator resumes, and never clears itself at midnight. The UTC day
is the stack's clock (market time in a replay), so a replay stops where live would have.
"""
from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
import msgspec

from shared.domain.day_tally import DayTally  # noqa: F401 - the tally's rules below; re-exported
from shared.domain.position import ClosedTrade, State

ZERO = Decimal(0)


class LossLimits(msgspec.Struct, frozen=True, kw_only=True):
    """The configured limits; 0 = off."""
    max_daily_loss: Decimal = ZERO
    max_consecutive_losses: int = 0
    max_trades_per_day: int = 0

    @classmethod
    def of(cls, cfg: object) -> LossLimits:
        """The limits of a Config (MAX_DAILY_LOSS_USD, MAX_CONSECUTIVE_LOSSES, MAX_TRADES_PER_DAY)."""
        return cls(max_daily_loss=cfg.MAX_DAILY_LOSS_USD, max_consecutive_losses=cfg.MAX_CONSECUTIVE_LOSSES,
                   max_trades_per_day=cfg.MAX_TRADES_PER_DAY)

    def any_on(self) -> bool:
        """True when at least one limit is set."""
        return self.max_daily_loss > 0 or self.max_consecutive_losses > 0 or self.max_trades_per_day > 0


def utc_day(at: float) -> str:
    """The UTC calendar day of an epoch time."""
    return datetime.fromtimestamp(at, tz=UTC).strftime("%Y-%m-%d")


def net_pnl(trade: ClosedTrade, fee_rate: Decimal) -> Decimal:
    """Realised PnL of a closed trade after fees: the gross PnL less the entry's commission (the base asset it
    took, at the entry price, else `fee_rate` of the entry's notional) and `fee_rate` of the exits' notional."""
    entry_fee = trade.entry_fee_base * trade.avg_entry if trade.entry_fee_base > 0 else \
        fee_rate * trade.avg_entry * trade.qty
    exit_fee = fee_rate * trade.avg_exit * trade.qty
    return (trade.pnl_quote - entry_fee - exit_fee).quantize(Decimal("0.00000001"))


def roll_day(tally: DayTally, at: float) -> DayTally:
    """The tally as of time `at`: a new UTC day starts at zero trades and PnL (the streak and a latch stay)."""
    day = utc_day(at)
    if tally.day == day:
        return tally
    return DayTally(day=day, consecutive_losses=tally.consecutive_losses, last_trade_key=tally.last_trade_key,
                    latched=tally.latched)


def record_close(tally: DayTally, trade: ClosedTrade, fee_rate: Decimal) -> DayTally | None:
    """The tally with `trade` counted (by its close time's UTC day), or None when it was counted already."""
    if trade.trade_key == tally.last_trade_key:
        return None
    t = roll_day(tally, trade.closed_at)
    pnl = net_pnl(trade, fee_rate)
    return DayTally(day=t.day, net_pnl=t.net_pnl + pnl, trades=t.trades + 1,
                    consecutive_losses=t.consecutive_losses + 1 if pnl < 0 else 0,
                    last_trade_key=trade.trade_key, latched=t.latched)


def tripped(tally: DayTally, limits: LossLimits) -> str:
    """The reason the tally breaks a limit, or '' when none does."""
    if limits.max_daily_loss > 0 and tally.net_pnl <= -limits.max_daily_loss:
        return f"MAX_DAILY_LOSS_USD: the day's net PnL {tally.net_pnl:.2f} is at or below -{limits.max_daily_loss}"
    if limits.max_consecutive_losses > 0 and tally.consecutive_losses >= limits.max_consecutive_losses:
        return f"MAX_CONSECUTIVE_LOSSES: {tally.consecutive_losses} losing trades in a row"
    if limits.max_trades_per_day > 0 and tally.trades >= limits.max_trades_per_day:
        return f"MAX_TRADES_PER_DAY: {tally.trades} trades closed today"
    return ""


def latch(tally: DayTally, limits: LossLimits) -> DayTally:
    """The tally with a newly tripped limit latched (an existing latch is kept)."""
    if tally.latched:
        return tally
    why = tripped(tally, limits)
    return msgspec.structs.replace(tally, latched=why) if why else tally


def resume(tally: DayTally) -> DayTally:
    """An operator's resume: the latch is cleared and the losing streak starts again (the day's PnL and trade
    count are facts of the day and stay, so the next close of the same day re-trips a limit still broken)."""
    return msgspec.structs.replace(tally, latched="", consecutive_losses=0)


def headroom(tally: DayTally, limits: LossLimits, now: float) -> list[tuple[str, str, str]]:
    """(setting, limit, how far the day is) for status and preflight; `now` rolls the day first."""
    t = roll_day(tally, now)
    rows = []
    rows.append(("MAX_DAILY_LOSS_USD", str(limits.max_daily_loss) if limits.max_daily_loss > 0 else "off",
                 f"day net {t.net_pnl:.2f}"))
    rows.append(("MAX_CONSECUTIVE_LOSSES", str(limits.max_consecutive_losses or "off"),
                 f"{t.consecutive_losses} in a row"))
    rows.append(("MAX_TRADES_PER_DAY", str(limits.max_trades_per_day or "off"), f"{t.trades} today"))
    return rows


# ---- the state transitions (handed to the state store by position_engine's LossGuard) ----------------------------

def close_counted(st: State, fee_rate: Decimal, limits: LossLimits) -> tuple[State, list] | None:
    """State transition: the last closed trade counted into the day's tally (once), a tripped limit latched.
    None (nothing to write) when there is no closed trade or it was counted already."""
    if st.last_closed is None:
        return None
    tally = record_close(st.day, st.last_closed, fee_rate)
    if tally is None:
        return None
    st.day = latch(tally, limits)
    return st, []


def limits_resumed(st: State) -> tuple[State, list] | None:
    """State transition: the operator's resume clears the latch and the losing streak (None: nothing to clear)."""
    if not st.day.latched and not st.day.consecutive_losses:
        return None
    st.day = resume(st.day)
    return st, []
