"""The day's tally of closed trades (issue 22's loss limits), as the state document holds it (`State.day`). Its own
module so that position.py holds it without importing the limits' rules (loss_limits.py imports position.py)."""
from __future__ import annotations

from decimal import Decimal

import msgspec


class DayTally(msgspec.Struct, kw_only=True):
    """Closed trades of the UTC day `day` (YYYY-MM-DD); the losing streak runs across days."""
    day: str = ""
    net_pnl: Decimal = Decimal(0)
    trades: int = 0
    consecutive_losses: int = 0
    last_trade_key: str = ""       # the last trade counted: a re-delivered CLOSED is not counted twice
    latched: str = ""              # the reason of a tripped limit, until `executorctl resume`
