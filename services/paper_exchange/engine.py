"""The matching engine and account: pure (no HTTP, no threads, no wall clock).

It is fed requests and price points; between two price points the price is taken to have
traded through every price in between. Times are the market time of the last price point.
"""
from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal

from shared.domain.risk_math import ceil_to_step, floor_to_step
from services.paper_exchange import filters, ledger, repay_at_cancel, rules
from services.paper_exchange.margin import MarginMixin
from services.paper_exchange.model import (
    BORROW_EFFECTS, CROSS, ISOLATED, REPAY_EFFECTS, SIDE_EFFECTS, SPOT, STOP_TYPES, ApiError, Balance, EngineState,
    NewOrder, PList, POrder, rejected,
)
from services.paper_exchange.settings import STP_MODES, Settings

_BPS = Decimal(10000)
_HOUR_MS = 3_600_000


class Engine(MarginMixin):
    """One symbol, one account (spot + margin wallets). Callers serialise access (the server holds one lock)."""

    # Order-event hook (the WebSocket user data stream): called as listener(kind, order_or_list, extra) with kind
    # "new", "trade" (extra = (fill, maker)), "trigger", "finish" (CANCELED/EXPIRED) or "list". None = no one listens.
    listener: Callable[[str, object, object], None] | None = None

    def _emit(self, kind: str, obj: object, extra: object = None) -> None:
        if self.listener is not None:
            self.listener(kind, obj, extra)

    def __init__(self, s: Settings, state: EngineState):
        self.s = s
        self.st = state
        self._by_client: dict[tuple[str, str], int] = {}  # (account, client id) -> latest order id
        # ids of the orders that may still be open (a closed order never reopens): a point looks at these, not
        # at every order of a month-long replay
        self._maybe_open: set[int] = {oid for oid, o in state.orders.items() if o.is_open}
        for oid in sorted(state.orders):
            o = state.orders[oid]
            self._by_client[(o.account, o.client_order_id)] = oid

    @classmethod
    def fresh(cls, s: Settings, last: Decimal, market_ms: int, feed_last: Decimal | None = None) -> Engine:
        """A new account with the configured balances (`feed_last`: the feed symbol's price, None = `last`)."""
        def fund() -> dict[str, Balance]:
            return {a: Balance(free=v) for a, v in s.balances.items()}
        # Each margin wallet starts with the same PAPER_BALANCES as spot (no transfers needed).
        return cls(s, EngineState(symbol=s.symbol, balances=fund(), last=last, market_ms=market_ms,
                                  margin={CROSS: fund(), ISOLATED: fund()}, feed_last=feed_last))

    # ---- market ------------------------------------------------------------------------------

    def book(self) -> tuple[Decimal, Decimal]:
        """(bid, ask) of SYMBOL: bid = last - floor(spread/2) ticks, ask = bid + spread ticks, both on tick."""
        return self.book_at(self.st.last)

    def book_at(self, last: Decimal) -> tuple[Decimal, Decimal]:
        """(bid, ask) around a last price, the way `book` builds SYMBOL's (also the feed symbol's book)."""
        tick = self.s.tick_size
        bid = floor_to_step(last, tick) - (self.s.spread_ticks // 2) * tick
        return bid, bid + self.s.spread_ticks * tick

    def last_of(self, symbol: str) -> Decimal:
        """The last price of a listed symbol: SYMBOL's (what orders see) or the feed symbol's (unscaled)."""
        if symbol == self.s.symbol or self.st.feed_last is None:
            return self.st.last
        return self.st.feed_last

    def _slipped(self, side: str, at: Decimal) -> Decimal:
        slip = self.s.slippage_bps / _BPS
        if side == "BUY":
            return ceil_to_step(at * (1 + slip), self.s.tick_size)
        return floor_to_step(at * (1 - slip), self.s.tick_size)

    def market_price(self, side: str) -> Decimal:
        """Where a MARKET order fills: ask/bid worsened by the slippage, kept on tick."""
        bid, ask = self.book()
        slip = self.s.slippage_bps / _BPS
        if side == "BUY":
            return ceil_to_step(ask * (1 + slip), self.s.tick_size)
        return floor_to_step(bid * (1 - slip), self.s.tick_size)

    def on_price(self, price: Decimal, market_ms: int, gap: bool = False, feed: Decimal | None = None) -> None:
        """A new price point: trigger stops, fill resting limits the move traded through.

        Between two points the price is taken to have traded continuously through every price in between,
        so a stop triggers where the path crosses it and its limit is checked against the market at that
        moment. `gap=True` is a jump (no trades in between): stops trigger on the new price alone and a
        stop-limit whose limit the market jumped past rests, as on Binance. `feed`: the feed symbol's price at
        this point (SYMBOL's `price` is it with the basis applied); None = no basis.
        """
        self.st.feed_last = feed
        prev, self.st.last = self.st.last, price
        hours = market_ms // _HOUR_MS - self.st.market_ms // _HOUR_MS
        if hours > 0:
            self._accrue_interest(hours)  # Binance charges margin interest on every hour boundary
        self.st.market_ms = max(self.st.market_ms, market_ms)
        lo, hi = _move(prev, price, gap)
        for oid in [o.order_id for o in self.open_orders()]:
            o = self.st.orders[oid]
            if not o.is_open:
                continue  # expired as a sibling earlier in this loop
            if not o.is_working:
                if rules.stop_reached(o.side, o.type, o.stop_price, lo, hi):
                    self._trigger(o, None if gap else o.stop_price)
            elif rules.traded_through(o, lo, hi):
                self._fill(o, self._partial_qty(o), o.price, maker=True)

    def acts_at(self, price: Decimal, gap: bool = False) -> bool:
        """Whether a move from the last price to `price` would trigger or fill an open order (the same tests as
        `on_price`, without acting), or a triggered stop-limit already rests: a replay may play quiet points in
        one go (POST /admin/advance "until_active"), never one where something happens."""
        lo, hi = _move(self.st.last, price, gap)
        for o in self.open_orders():
            if not o.is_working:
                if rules.stop_reached(o.side, o.type, o.stop_price, lo, hi):
                    return True
            elif o.stop_price or rules.traded_through(o, lo, hi):
                return True  # a stop whose limit the market gapped past rests: the exit side watches it each point
        return False

    def _partial_qty(self, o: POrder) -> Decimal:
        step = self.s.qty_step
        q = max(floor_to_step(o.remaining * self.s.partial_fill_ratio, step), step)
        return min(q, o.remaining)

    def _trigger(self, o: POrder, at: Decimal | None) -> None:
        """The stop triggered when the market traded at `at` (None: at the current book, after a gap)."""
        o.is_working = True
        o.working_time = o.update_time = self.st.market_ms
        self._emit("trigger", o)
        self._expire_siblings(o)
        if o.type in ("STOP_LOSS", "TAKE_PROFIT"):
            self._fill_market(o, at)
            return
        bid, ask = self.book() if at is None else (at, at)
        if rules.marketable(o.side, o.price, bid, ask) and not self._self_trade(o, ask if o.side == "BUY" else bid):
            self._fill(o, o.remaining, ask if o.side == "BUY" else bid, maker=False)
        # else: the market gapped through the limit; it rests (isWorking) until traded through.

    def _fill_market(self, o: POrder, at: Decimal | None = None) -> None:
        price = self.market_price(o.side) if at is None else self._slipped(o.side, at)
        if self._self_trade(o, price):
            return
        try:
            self._fill(o, o.remaining, price, maker=False)
        except ApiError:
            # A triggered stop-market that cannot be paid for expires, as on Binance.
            self._finish(o, "EXPIRED", "INSUFFICIENT_LIQUIDITY")

    def _fill(self, o: POrder, qty: Decimal, price: Decimal, maker: bool) -> None:
        s = self.s
        bnb_price = s.bnb_price if s.account_flags.bnb_burn else None   # PAPER_BNB_BURN: fees paid in BNB
        fill = ledger.settle_fill(self.st, o, qty, price, maker, s.fee_rate, s.base_asset, s.quote_asset, bnb_price)
        self._emit("trade", o, (fill, maker))
        if o.side_effect in REPAY_EFFECTS:   # what the fill brought in pays back that asset's loan
            self._auto_repay(o.account, s.base_asset if o.side == "BUY" else s.quote_asset)
        if o.order_list_id != -1:
            self._expire_siblings(o)
            self._update_list(o.order_list_id)

    # ---- queries -----------------------------------------------------------------------------

    def find(self, order_id: int | None = None, client_order_id: str | None = None, account: str = SPOT) -> POrder:
        """The order by id or client id (latest with that client id) in `account`; -2013 when absent."""
        if order_id is None and client_order_id:
            order_id = self._by_client.get((account, client_order_id))
        o = self.st.orders.get(order_id) if order_id is not None else None
        if o is None or o.account != account or (client_order_id and o.client_order_id != client_order_id):
            raise ApiError(-2013, "Order does not exist.")
        return o

    def open_orders(self, account: str | None = None) -> list[POrder]:
        """Open orders (of one wallet, or all), oldest first."""
        live = [o for o in (self.st.orders[oid] for oid in self._maybe_open) if o.is_open]
        self._maybe_open = {o.order_id for o in live}
        return sorted((o for o in live if account in (None, o.account)), key=lambda o: o.order_id)

    def find_list(self, list_id: int | None = None, list_client_id: str | None = None, account: str = SPOT) -> PList:
        """An order list (latest with that client id) of `account`; -2013 when absent."""
        for lid in sorted(self.st.lists, reverse=True):
            lst = self.st.lists[lid]
            if lst.account != account:
                continue
            if lid == list_id or (list_id is None and list_client_id and lst.list_client_order_id == list_client_id):
                return lst
        raise ApiError(-2013, "Order list does not exist.")

    # ---- placing -----------------------------------------------------------------------------

    def place(self, req: NewOrder) -> POrder:
        """Validate, lock, register and (if it takes) execute one order."""
        o = self._build(req, -1)
        if o.side_effect in BORROW_EFFECTS:
            self._auto_borrow(o, req)
        if o.type == "MARKET":
            return self._place_market(o, req)
        lock_asset, per_unit = self._lock_terms(o)
        oid = self.st.next_order_id
        o.lock_id = ledger.lock(self.st, lock_asset, per_unit, o.orig_qty, [oid], o.account) if per_unit else 0
        self._register(o)
        if o.type == "LIMIT":
            self._execute_limit(o)
        return o

    def _place_market(self, o: POrder, req: NewOrder) -> POrder:
        price = self.market_price(o.side)
        if req.quote_qty is not None:
            o.orig_quote_qty = req.quote_qty
            o.orig_qty = floor_to_step(req.quote_qty / price, self.s.qty_step)
            filters.check_qty(self.s, o.orig_qty)
        filters.check_notional(self.s, price, o.orig_qty)
        paid, amount = (self.s.quote_asset, price * o.orig_qty) if o.side == "BUY" else (self.s.base_asset, o.orig_qty)
        ledger.require_free(self.st, paid, amount, o.account)
        self._register(o)
        if not self._self_trade(o, price):
            self._fill(o, o.orig_qty, price, maker=False)
        return o

    def _execute_limit(self, o: POrder) -> None:
        bid, ask = self.book()
        if rules.marketable(o.side, o.price, bid, ask):
            if not self._self_trade(o, ask if o.side == "BUY" else bid):
                self._fill(o, o.remaining, ask if o.side == "BUY" else bid, maker=False)
        elif o.time_in_force in ("IOC", "FOK"):
            self._finish(o, "EXPIRED", "UNFILLED_FOK_ORDER_EXPIRED" if o.time_in_force == "FOK"
                         else "UNFILLED_IOC_QUANTITY_EXPIRED")

    # ---- self-trade prevention (faqs/stp_faq.md) -----------------------------------------------

    def _self_trade(self, taker: POrder, price: Decimal) -> bool:
        """Before `taker` trades at `price`: our own resting orders of the other side it would match instead of
        the market (a BUY's at or below `price`, a SELL's at or above) are a self-trade. The taker's mode decides:
        EXPIRE_MAKER / EXPIRE_BOTH expire those makers, EXPIRE_TAKER / EXPIRE_BOTH the taker, all with status
        EXPIRED_IN_MATCH (execution type TRADE_PREVENTION) and one preventedMatchId. True: the taker expired."""
        makers = [m for m in self.open_orders(taker.account) if m.order_id != taker.order_id
                  and m.side != taker.side and m.is_working and m.type not in ("MARKET", "STOP_LOSS", "TAKE_PROFIT")
                  and (m.price <= price if taker.side == "BUY" else m.price >= price)]
        if not makers or taker.stp_mode == "NONE":
            return False
        match_id = self.st.next_prevented_match_id
        self.st.next_prevented_match_id += 1
        if taker.stp_mode in ("EXPIRE_MAKER", "EXPIRE_BOTH"):
            for m in makers:
                if m.is_open:  # an earlier maker's OCO sibling may have gone with it
                    self._prevent(m, match_id)
                    self._expire_siblings(m)
        if taker.stp_mode in ("EXPIRE_TAKER", "EXPIRE_BOTH"):
            self._prevent(taker, match_id)
            return True
        return False

    def _prevent(self, o: POrder, match_id: int) -> None:
        o.prevented_qty += o.remaining
        o.prevented_match_id = match_id
        self._finish(o, "EXPIRED_IN_MATCH")

    def expire(self, order_id: int | None, client_order_id: str | None, reason: str, account: str = SPOT) -> POrder:
        """The exchange expires an open order with `reason` (an expiryReason, e.g. EXECUTION_RULE_PRICE_RANGE_
        EXCEEDED): admin fault. An OCO leg takes its list with it, as any leg that ends without filling."""
        o = self.find(order_id, client_order_id, account)
        if not o.is_open:
            raise ApiError(-2011, "Unknown order sent.")
        self._finish(o, "EXPIRED", reason)
        self._expire_siblings(o)
        return o

    def _lock_terms(self, o: POrder) -> tuple[str, Decimal]:
        """(asset, amount per base unit) an open order locks; per_unit 0 = nothing to lock."""
        if o.side == "SELL":
            return self.s.base_asset, Decimal(1)
        if o.type in ("STOP_LOSS", "TAKE_PROFIT"):
            return self.s.quote_asset, Decimal(0)  # BUY stop-market: paid for when it triggers
        return self.s.quote_asset, o.price

    def _build(self, req: NewOrder, list_id: int) -> POrder:
        """Check parameters, filters and trigger/take rules; return an unregistered order."""
        rules.check_shape(req)
        if req.side_effect and (req.account == SPOT or req.side_effect not in SIDE_EFFECTS):
            raise ApiError(-1100, "Illegal characters found in parameter 'sideEffectType'.")
        stp = req.stp_mode.upper() or self.s.stp_mode
        if stp not in STP_MODES:
            raise ApiError(-1013, "This symbol does not allow the specified self-trade prevention mode.")
        cid = req.client_order_id or f"paper-{self.st.next_order_id}-{self.st.market_ms}"
        # Only the latest order with a client id can still be open (a duplicate is refused).
        prior = self._by_client.get((req.account, cid))
        if prior is not None and self.st.orders[prior].is_open:
            raise rejected("Duplicate order sent.")
        self._check_filters(req)
        self._check_not_immediate(req)
        stop = req.type in STOP_TYPES
        return POrder(
            order_id=0, client_order_id=cid, side=req.side, type=req.type, time_in_force=req.time_in_force,
            orig_qty=req.quantity or Decimal(0), price=req.price or Decimal(0), stop_price=req.stop_price or Decimal(0),
            order_list_id=list_id, time=self.st.market_ms, update_time=self.st.market_ms,
            working_time=-1 if stop else self.st.market_ms, is_working=not stop,
            account=req.account, side_effect=req.side_effect, stp_mode=stp,
            auto_repay_at_cancel=req.auto_repay_at_cancel,
        )

    def _check_filters(self, req: NewOrder) -> None:
        for p in (req.price, req.stop_price):
            if p is not None:
                filters.check_price(self.s, p)
        if req.quantity is not None:
            filters.check_qty(self.s, req.quantity)
        ref = req.price if req.price is not None else req.stop_price
        if ref is not None and req.quantity is not None:
            filters.check_notional(self.s, ref, req.quantity)

    def _check_not_immediate(self, req: NewOrder) -> None:
        if req.type in STOP_TYPES and rules.stop_triggered(req.side, req.type, req.stop_price, self.st.last):
            raise rejected("Stop price would trigger immediately.")
        if req.type == "LIMIT_MAKER":
            bid, ask = self.book()
            if rules.marketable(req.side, req.price, bid, ask):
                raise rejected("Order would immediately match and take.")

    def _register(self, o: POrder) -> None:
        o.order_id = self.st.next_order_id
        self.st.next_order_id += 1
        self.st.orders[o.order_id] = o
        self._maybe_open.add(o.order_id)
        self._by_client[(o.account, o.client_order_id)] = o.order_id
        self._emit("new", o)

    # ---- OCO ---------------------------------------------------------------------------------

    def place_oco(self, side: str, qty: Decimal, above: NewOrder, below: NewOrder, list_client_id: str) -> PList:
        """Place an OCO (spot): both legs validated, the quantity locked ONCE for both."""
        _check_oco_types(side, above.type, below.type)
        above_ref = above.price if above.type == "LIMIT_MAKER" else above.stop_price
        below_ref = below.price if below.type == "LIMIT_MAKER" else below.stop_price
        if above_ref is None or below_ref is None or not above_ref > self.st.last > below_ref:
            raise rejected("The relationship of the prices for the orders is not correct.")
        list_id = self.st.next_list_id
        legs = [self._build(r, list_id) for r in (below, above)]
        if legs[0].client_order_id == legs[1].client_order_id:
            raise rejected("Duplicate order sent.")
        account, first = above.account, self.st.next_order_id
        if side == "SELL":
            asset, per_unit = self.s.base_asset, Decimal(1)
        else:
            asset, per_unit = self.s.quote_asset, max(leg.price or leg.stop_price for leg in legs)
        if above.side_effect in BORROW_EFFECTS:
            self._borrow_shortfall(account, asset, per_unit * qty, legs[0])
        lock_id = ledger.lock(self.st, asset, per_unit, qty, [first, first + 1], account)
        for leg in legs:
            leg.lock_id = lock_id
            self._register(leg)
        self.st.next_list_id += 1
        lst = PList(order_list_id=list_id, list_client_order_id=list_client_id or f"paper-list-{list_id}",
                    transaction_time=self.st.market_ms, order_ids=[leg.order_id for leg in legs], account=account)
        self.st.lists[list_id] = lst
        self._emit("list", lst)
        return lst

    def _expire_siblings(self, o: POrder) -> None:
        if o.order_list_id == -1:
            return
        for sid in self.st.lists[o.order_list_id].order_ids:
            sib = self.st.orders[sid]
            if sid != o.order_id and sib.is_open:
                self._finish(sib, "EXPIRED", "OCO_TRIGGER")
        self._update_list(o.order_list_id)

    def _update_list(self, list_id: int) -> None:
        lst = self.st.lists[list_id]
        if not any(self.st.orders[i].is_open for i in lst.order_ids):
            lst.list_status_type = lst.list_order_status = "ALL_DONE"
        self._emit("list", lst)

    def _finish(self, o: POrder, status: str, reason: str = "") -> None:
        o.status = status
        o.expiry_reason = reason
        o.update_time = self.st.market_ms
        if o.lock_id:
            ledger.release_if_done(self.st, o.lock_id)
        if status in ("CANCELED", "EXPIRED"):
            repay_at_cancel.repay_unused_borrow(self.st, o)
        self._emit("finish", o)

    # ---- cancelling --------------------------------------------------------------------------

    def cancel(self, order_id: int | None = None, client_order_id: str | None = None, account: str = SPOT) -> POrder:
        """Cancel an open order (a list leg cancels its whole list); -2011 when not open."""
        try:
            o = self.find(order_id, client_order_id, account)
        except ApiError:
            raise ApiError(-2011, "Unknown order sent.") from None
        if not o.is_open:
            raise ApiError(-2011, "Unknown order sent.")
        if o.order_list_id != -1:
            self.cancel_list(o.order_list_id, account=o.account)
        else:
            self._finish(o, "CANCELED")
        return o

    def cancel_list(self, list_id: int | None = None, list_client_id: str | None = None, account: str = SPOT) -> PList:
        """Cancel every open leg of an order list."""
        try:
            lst = self.find_list(list_id, list_client_id, account)
        except ApiError:
            raise ApiError(-2011, "Unknown order list sent.") from None
        legs = [self.st.orders[i] for i in lst.order_ids]
        if not any(leg.is_open for leg in legs):
            raise ApiError(-2011, "Unknown order list sent.")
        for leg in legs:
            if leg.is_open:
                self._finish(leg, "CANCELED")
        lst.list_status_type = lst.list_order_status = "ALL_DONE"
        self._emit("list", lst)
        return lst

    def cancel_replace(self, mode: str, cancel_id: int | None, cancel_cid: str | None,
                       req: NewOrder) -> tuple[POrder | ApiError, POrder | ApiError | None]:
        """Cancel then place; each part is the order or its ApiError (new is None when not attempted). A new order
        failing a filter is (error, error): nothing was cancelled."""
        if mode not in ("STOP_ON_FAILURE", "ALLOW_FAILURE"):
            raise ApiError(-1145, "Invalid cancelRestrictions")
        rules.check_shape(req)
        try:
            # Binance evaluates the new order's filters BEFORE cancelling: a filter failure fails both parts
            # and the old order stays open. Only what the matching engine refuses comes after the cancel.
            self._check_filters(req)
            filters.check_market_notional(self.s, req, self.st.last)
        except ApiError as e:
            return e, e
        try:
            cancelled: POrder | ApiError = self.cancel(cancel_id, cancel_cid)
        except ApiError as e:
            cancelled = e
            if mode == "STOP_ON_FAILURE":
                return cancelled, None
        try:
            return cancelled, self.place(req)
        except ApiError as e:
            return cancelled, e


def _move(prev: Decimal, price: Decimal, gap: bool) -> tuple[Decimal, Decimal]:
    """The prices a move from `prev` to `price` traded: all in between, or after a gap only the new one."""
    return (price, price) if gap else (min(prev, price), max(prev, price))


def _check_oco_types(side: str, above: str, below: str) -> None:
    if side == "SELL":
        ok = above in ("LIMIT_MAKER", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT") and below in ("STOP_LOSS", "STOP_LOSS_LIMIT")
    else:
        ok = above in ("STOP_LOSS", "STOP_LOSS_LIMIT") and below in ("LIMIT_MAKER", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
    if side not in ("BUY", "SELL"):
        raise ApiError(-1117, "Invalid side.")
    if not ok:
        raise ApiError(-1116, "Invalid orderType.")
