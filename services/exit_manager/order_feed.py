"""The exit manager's view of the `orders` stream (published by user_stream from the exchange's user data stream):
its own consumer group `exit_manager`, the latest record the exchange reported of each of the trade's exit orders,
the updates our own actions are still owed, whether the stream can be relied on right now, and the REST weight
budget and counters of the fallback polling. Same shape as the engine's `position_engine/order_feed.py`."""
from __future__ import annotations

import time

import redis

from shared.adapters.heartbeat import UserStreamHealth
from shared.adapters.redis_streams import GroupConsumer
from shared.domain.entry_rules import order_from_update
from shared.domain.exit_rules import newer_record
from shared.domain.order_ids import LEG_CODES, trade_key_of
from shared.domain.order_updates import OrderUpdate
from shared.domain.orders import Order, order_is_open
from shared.domain.weight_budget import IP_WEIGHT_LIMIT, WeightBudget, default_burst
from shared.runtime import Runtime

GROUP = "exit_manager"
HB_CHECK_SEC = 0.5          # wall s between reads of user_stream's heartbeat
OPEN_ORDERS_WEIGHT = {False: 6, True: 10}    # GET /api/v3/openOrders (symbol) | /sapi/v1/margin/openOrders
QUERY_WEIGHT = {False: 4, True: 10}          # GET /api/v3/order | /sapi/v1/margin/order
# The exits' polling may use the IP's weight further than the engine's (which stops at 80 %): protecting a filled
# position comes before an entry. Orders, cancels and flatten calls never wait for the budget.
EXIT_IP_SOFT_LIMIT = int(IP_WEIGHT_LIMIT * 0.95)
_ENTRY_CODE = LEG_CODES["entry"]


def exit_order_of(cid: str, trade_key: str) -> bool:
    """`cid` is a leg or flatten order of `trade_key` (not its entry)."""
    return trade_key_of(cid) == trade_key and cid.rsplit("-", 2)[1] != _ENTRY_CODE


class ExitFeed:
    """Consumer group `exit_manager` on `{prefix}orders`, and the facts the learning step decides with."""

    def __init__(self, rt: Runtime, margin: bool) -> None:
        self.rt, self.cfg, self.margin = rt, rt.cfg, margin
        # "$": a new group has nothing to catch up on; the first tick after a start reads the exchange by REST.
        self.consumer = GroupConsumer(rt.r, rt.cfg.key("orders"), GROUP, GROUP, start_id="$")
        self.open_orders_weight, self.query_weight = OPEN_ORDERS_WEIGHT[margin], QUERY_WEIGHT[margin]
        per_min = rt.cfg.EXIT_REST_WEIGHT_BUDGET_PER_MIN
        self.budget = WeightBudget(per_min, default_burst(per_min, self.open_orders_weight), EXIT_IP_SOFT_LIMIT)
        self.trade_key = ""
        self.records: dict[str, Order] = {}        # client id -> the exchange's latest record (stream or REST)
        self.expect: dict[str, float] = {}         # client id -> since when an update of it is due (wall)
        self.last_rest = 0.0                       # wall time of the last REST read of the legs (0 = never)
        self.updates = 0                           # stream updates about the current trade's exit orders
        self.polls: dict[str, int] = {}            # reason -> REST reads of the legs
        self.poll_weight = 0                       # weight of those reads (openOrders + queries)
        self.action_weight = 0                     # GETs made as part of an action (adopt, count after cancel, ...)
        self.foreign_trade = False                 # a trade on our symbol by an order that is not the trade's
        self._stream_health = UserStreamHealth(self.rt.r, self.cfg.EXEC_PREFIX, HB_CHECK_SEC)

    # ---- the trade's records ----------------------------------------------------------------------

    def follow(self, trade_key: str) -> None:
        """Keep records of `trade_key` only (a new trade starts with none)."""
        if trade_key != self.trade_key:
            self.trade_key, self.records, self.expect = trade_key, {}, {}

    def note(self, o: Order) -> None:
        """A record of one of our orders from the exchange (stream update, REST answer)."""
        if self.trade_key and exit_order_of(o.client_order_id, self.trade_key) and \
                newer_record(self.records.get(o.client_order_id), o):
            self.records[o.client_order_id] = o

    def on_update(self, u: OrderUpdate) -> bool:
        """An `orders` stream update; True when it is about the current trade's exit orders (wake a tick)."""
        if u.symbol != self.cfg.SYMBOL or not self.trade_key:
            return False
        if trade_key_of(u.client_order_id) != self.trade_key:
            # somebody else's trade on our symbol (a person closing by hand): the wallet check is due at once
            self.foreign_trade = self.foreign_trade or u.exec_type == "TRADE"
            return u.exec_type == "TRADE"
        if not exit_order_of(u.client_order_id, self.trade_key):
            return False
        self.updates += 1
        self.expect.pop(u.client_order_id, None)
        self.note(order_from_update(u))
        return True

    def final(self, cid: str) -> Order | None:
        """The exchange's final record of `cid` if one was reported (it never changes again)."""
        o = self.records.get(cid)
        return o if o is not None and not order_is_open(o) else None

    def expect_update(self, *cids: str) -> None:
        now = time.time()
        for c in cids:
            if c and self.final(c) is None:  # a final order has nothing more to say
                self.expect.setdefault(c, now)

    def expect_since(self) -> float | None:
        return min(self.expect.values()) if self.expect else None

    # ---- the stream's health and the REST budget --------------------------------------------------

    def stream_ok(self) -> bool:
        """user_stream is alive and connected to the exchange (in margin mode its stream is the margin wallet's)."""
        return self._stream_health.ok()

    def polled(self, reason: str, weight: int) -> None:
        self.polls[reason] = self.polls.get(reason, 0) + 1
        self.poll_weight += weight

    def charge_action(self, weight: int) -> None:
        self.action_weight += weight
        self.budget.charge(weight, time.time())

    def info(self) -> dict:
        """For the heartbeat: how the exit manager learns of its orders."""
        return {"stream_ok": self.stream_ok(), "stream_updates": self.updates, "rest_polls": dict(self.polls),
                "rest_poll_weight": self.poll_weight, "rest_action_weight": self.action_weight,
                "rest_weight_spent": self.budget.spent, "rest_budget_denied": self.budget.denied,
                "rest_budget_per_min": self.budget.per_min}


class Waker:
    """Blocks until something arrives on any of `streams` (without consuming it: the consumer groups do that).
    The streams' last ids are read before the group reads, so an entry that arrives in between still wakes."""

    def __init__(self, r: redis.Redis, streams: list[str]) -> None:
        self.r, self.streams = r, streams
        self._last: dict[str, str] = {}

    def mark(self) -> None:
        pipe = self.r.pipeline(transaction=False)
        for s in self.streams:
            pipe.xrevrange(s, "+", "-", count=1)
        for s, rows in zip(self.streams, pipe.execute()):
            if rows:
                rid = rows[0][0]
                self._last[s] = rid.decode() if isinstance(rid, bytes) else rid
            else:
                self._last[s] = "0-0"

    def wait(self, block_ms: int) -> None:
        if not self._last:
            self.mark()
        self.r.xread(dict(self._last), count=1, block=block_ms)
