"""The engine's view of the `orders` stream (published by user_stream from the exchange's user data stream): its
own consumer group, whether the stream can be relied on right now, the trades it reported per entry order, and the
REST weight budget and counters of the fallback polling."""
from __future__ import annotations



from shared.adapters.heartbeat import UserStreamHealth
from shared.adapters.redis_streams import GroupConsumer
from shared.domain.entry_rules import entry_attempt_of, stream_fill
from shared.domain.order_updates import OrderUpdate
from shared.domain.orders import Fill
from shared.domain.weight_budget import WeightBudget, default_burst
from shared.runtime import Runtime

GROUP = "position_engine"
HB_CHECK_SEC = 0.5         # wall s between reads of user_stream's heartbeat
QUERY_WEIGHT_SPOT = 4      # GET /api/v3/order
QUERY_WEIGHT_MARGIN = 10   # GET /sapi/v1/margin/order (IP weight)
TRADES_WEIGHT = 20         # GET myTrades
KEEP_ORDERS = 16           # entry orders whose stream trades are remembered


class OrderFeed:
    """Consumer group `position_engine` on `{prefix}orders`, plus the facts the tracker decides with."""

    def __init__(self, rt: Runtime, margin: bool) -> None:
        self.rt, self.cfg, self.margin = rt, rt.cfg, margin
        # "$": a group created now has nothing to catch up on (start-up reconciliation and the first REST
        # confirmation of an entry in progress cover what happened before the engine ever read the stream).
        self.consumer = GroupConsumer(rt.r, rt.cfg.key("orders"), GROUP, GROUP, start_id="$")
        self.fills: dict[str, list[Fill]] = {}
        self.query_weight = QUERY_WEIGHT_MARGIN if margin else QUERY_WEIGHT_SPOT
        per_min = rt.cfg.REST_WEIGHT_BUDGET_PER_MIN
        self.budget = WeightBudget(per_min, default_burst(per_min, self.query_weight))
        self.rest_queries: dict[str, int] = {}     # trade key -> GET order queries made for it (this process)
        self.total_queries = 0
        self.updates = 0                           # stream updates about the current entry
        self._stream_health = UserStreamHealth(self.rt.r, self.cfg.EXEC_PREFIX, HB_CHECK_SEC)

    def remember(self, u: OrderUpdate) -> None:
        """Keep the trades (with commissions) the stream reports for our entry orders."""
        f = stream_fill(u)
        if f is None or entry_attempt_of(u.client_order_id) is None:
            return
        self.fills.setdefault(u.client_order_id, []).append(f)
        while len(self.fills) > KEEP_ORDERS:
            del self.fills[next(iter(self.fills))]

    def stream_ok(self) -> bool:
        """user_stream is alive and connected to the exchange (in margin mode its stream is the margin wallet's)."""
        return self._stream_health.ok()

    def count_query(self, trade_key: str) -> None:
        self.total_queries += 1
        self.rest_queries[trade_key] = self.rest_queries.get(trade_key, 0) + 1
        while len(self.rest_queries) > KEEP_ORDERS:
            del self.rest_queries[next(iter(self.rest_queries))]

    def info(self) -> dict:
        """For the heartbeat: how the engine learns of its entries."""
        return {"stream_ok": self.stream_ok(), "stream_updates": self.updates,
                "rest_order_queries": self.total_queries, "rest_weight_spent": self.budget.spent,
                "rest_budget_denied": self.budget.denied, "rest_budget_per_min": self.budget.per_min}
