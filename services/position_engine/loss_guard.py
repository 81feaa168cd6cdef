"""Loss limits (issue 22): count each closed trade into the day's tally and latch the halt when a limit trips.

The exit manager writes the close (`last_closed` + CLOSED on `positions`); this reads it. Counting is idempotent
(the tally remembers the last trade it counted), so a CLOSED read twice, or the start-up pass over `last_closed`
after a crash, counts a trade once. A latched limit sets the halt flag (exits keep protecting) and stays until
`executorctl resume`: never cleared at midnight.
"""
from __future__ import annotations

from functools import partial

from shared.adapters.redis_streams import GroupConsumer
from shared.domain import loss_limits as LL
from shared.domain.messages import PositionEvent
from shared.domain.position import State
from shared.runtime import Runtime
from shared.service_loop import handle_entry

PROCESS = "position_engine"
HALT_BY = "loss_limits"


class LossGuard:
    """Follows CLOSED on `positions`; keeps `State.day` and the halt flag in step with the limits."""

    def __init__(self, rt: Runtime, fee_rate: object) -> None:
        self.rt, self.cfg = rt, rt.cfg
        self.fee_rate = fee_rate
        self.limits = LL.LossLimits.of(rt.cfg)
        self.consumer = GroupConsumer(rt.r, rt.cfg.key("positions"), PROCESS, PROCESS, start_id="$")

    def poll(self) -> bool:
        """Read `positions`; count a CLOSED trade. True when anything was read."""
        rows = self.consumer.read(block_ms=None, count=20)
        for e in rows:
            handle_entry(self.rt, e, self._on_message, self.consumer)
        return bool(rows)

    def _on_message(self, m: object) -> None:
        if isinstance(m, PositionEvent) and m.kind == "CLOSED":
            self.count_last_closed()

    def count_last_closed(self) -> None:
        """Count the state's last closed trade (once), latch a tripped limit, and make the halt flag agree."""
        st = self.rt.store.update(partial(LL.close_counted, fee_rate=self.fee_rate(), limits=self.limits))
        if st.last_closed is not None and st.day.last_trade_key == st.last_closed.trade_key:
            self.rt.event("day_tally", st.last_closed.trade_key, day=st.day.day, net_pnl=st.day.net_pnl,
                          trades=st.day.trades, consecutive_losses=st.day.consecutive_losses)
        self.enforce(st)

    def enforce(self, st: State | None = None) -> None:
        """A latched limit holds the halt flag; set it (and alert, once) if it is missing."""
        st = st or self.rt.store.load()
        why = st.day.latched
        if not why:
            return
        if not self.rt.r.exists(self.cfg.key("halt")):
            # the flag and its copy in the state together (a Redis that comes back empty keeps the halt)
            self.rt.store.set_halt({"by": HALT_BY, "reason": why, "at": self.rt.clock.now()})
            self.rt.event("halt_set", by=HALT_BY, reason=why, day=st.day.day, net_pnl=st.day.net_pnl,
                          trades=st.day.trades, consecutive_losses=st.day.consecutive_losses, level="warning")
            self.rt.notify("loss_limit", f"new entries halted: {why} (exits keep protecting; "
                           f"`executorctl resume` to trade again)", "CRITICAL", cause=f"{st.day.day}:{why}")

    def resume(self) -> None:
        """The operator resumed: clear the latch (and the losing streak) before the halt flag goes."""
        self.rt.store.update(LL.limits_resumed)
