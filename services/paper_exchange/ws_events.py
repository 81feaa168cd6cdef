"""User data stream events in Binance's shapes, built from the engine's order-event hook.

Called in the engine's thread with the app lock held (the state is read as of that moment):
`executionReport` for every order change (new, trade, stop trigger, cancel, expire), `listStatus` when an
order list starts or its status changes, `outboundAccountPosition` with the assets whose free/locked changed.
Every call says which wallet its events belong to (`wallet_id`: SPOT, CROSS or ISOLATED:<symbol>): on Binance each
wallet is a stream of its own (spot by signature, margin by listenToken), so the server hands them only to
subscriptions of that wallet. Times are market time, like every order and trade time of the paper exchange.
"""
from __future__ import annotations

from decimal import Decimal
from typing import Any

from services.paper_exchange.model import ISOLATED, SPOT, EngineState, PFill, PList, POrder
from services.paper_exchange.views import d8

_ZERO = "0.00000000"
Events = tuple[str, list[dict[str, Any]]]  # (wallet id, its events)


def wallet_id(account: str, symbol: str) -> str:
    """The name events and subscriptions share for a wallet: SPOT, CROSS, or ISOLATED:<symbol>."""
    return f"{ISOLATED}:{symbol}" if account == ISOLATED else account


class EventBuilder:
    """Turns engine hook calls into lists of Binance event dicts (without the subscription wrapper)."""

    def __init__(self, st_getter: Any, symbol: str, assets: tuple[str, ...]):
        self._st = st_getter  # () -> EngineState (the app may swap the engine object only at start-up)
        self.symbol = symbol
        self.assets = assets
        self._lists: dict[int, tuple[str, str]] = {}
        self._balances: dict[tuple[str, str], tuple[Decimal, Decimal]] = {}  # (account, asset) -> (free, locked)
        self.prime()

    def prime(self) -> None:
        """Remember the current balances and list states (so only later changes are reported)."""
        st: EngineState = self._st()
        self._balances = {(acc, a): _bal(st, acc, a) for acc in (SPOT, *st.margin) for a in self.assets}
        self._lists = {lid: (lst.list_status_type, lst.list_order_status) for lid, lst in st.lists.items()}

    def build(self, kind: str, obj: Any, extra: Any) -> Events:
        """The events one hook call produces (possibly none), with the wallet they belong to."""
        st: EngineState = self._st()
        if kind == "list":
            lst: PList = obj
            return wallet_id(lst.account, self.symbol), self._list(st, lst)
        o: POrder = obj
        out = [self._report(st, kind, o, extra)]
        acct = self._account(st, o.account)
        if acct is not None:
            out.append(acct)
        return wallet_id(o.account, self.symbol), out

    def _report(self, st: EngineState, kind: str, o: POrder, extra: Any) -> dict[str, Any]:
        ms = st.market_ms
        fill: PFill | None = None
        maker = False
        if kind == "trade":
            fill, maker = extra
        x = {"new": "NEW", "trade": "TRADE", "trigger": "NEW"}.get(kind, o.status)
        if x == "EXPIRED_IN_MATCH":
            x = "TRADE_PREVENTION"  # Binance's execution type for an STP expiry
        # A cancel is a request of its own: Binance reports the cancel's client id in "c" and the order's in "C".
        cancel = kind == "finish" and o.status == "CANCELED"
        ev: dict[str, Any] = {
            "e": "executionReport", "E": ms, "s": self.symbol,
            "c": f"paper-cancel-{o.order_id}" if cancel else o.client_order_id,
            "S": o.side, "o": o.type, "f": o.time_in_force or "GTC", "q": d8(o.orig_qty), "p": d8(o.price),
            "P": d8(o.stop_price), "F": _ZERO, "g": o.order_list_id, "C": o.client_order_id if cancel else "",
            "x": x, "X": "NEW" if kind == "new" else o.status, "r": "NONE", "i": o.order_id,
            "l": d8(fill.qty) if fill else _ZERO, "z": d8(_executed_upto(o, fill)),
            "L": d8(fill.price) if fill else _ZERO, "n": d8(fill.commission) if fill else "0",
            "N": fill.commission_asset if fill else None, "T": ms, "t": fill.trade_id if fill else -1,
            "I": 0, "w": o.is_working, "m": maker, "M": False, "O": o.time,
            "Z": d8(_cum_quote_upto(o, fill)), "Y": d8(fill.price * fill.qty) if fill else _ZERO,
            "Q": d8(o.orig_quote_qty), "V": o.stp_mode,
        }
        if kind == "finish" and o.prevented_match_id != -1:
            ev.update({"v": o.prevented_match_id, "A": d8(o.prevented_qty), "B": d8(o.prevented_qty)})
        if kind == "finish" and o.expiry_reason:
            ev["eR"] = o.expiry_reason  # CHANGELOG 2026-03-09: executionReport's optional expiry reason
        if kind == "new":
            # A market order is reported NEW before its trade: cumulative values as at that moment.
            ev["z"], ev["Z"] = _ZERO, _ZERO
        if o.is_working:
            ev["W"] = o.working_time
        return ev

    def _list(self, st: EngineState, lst: PList) -> list[dict[str, Any]]:
        now = (lst.list_status_type, lst.list_order_status)
        if self._lists.get(lst.order_list_id) == now:
            return []
        self._lists[lst.order_list_id] = now
        return [{
            "e": "listStatus", "E": st.market_ms, "s": self.symbol, "g": lst.order_list_id,
            "c": lst.contingency_type, "l": lst.list_status_type, "L": lst.list_order_status, "r": "NONE",
            "C": lst.list_client_order_id, "T": st.market_ms,
            "O": [{"s": self.symbol, "i": oid, "c": st.orders[oid].client_order_id} for oid in lst.order_ids],
        }]

    def _account(self, st: EngineState, account: str) -> dict[str, Any] | None:
        """outboundAccountPosition of `account`'s assets that changed since it was last reported."""
        changed = []
        for a in self.assets:
            now = _bal(st, account, a)
            if self._balances.get((account, a)) != now:
                self._balances[(account, a)] = now
                changed.append({"a": a, "f": d8(now[0]), "l": d8(now[1])})
        if not changed:
            return None
        return {"e": "outboundAccountPosition", "E": st.market_ms, "u": st.market_ms, "B": changed}


def _bal(st: EngineState, account: str, asset: str) -> tuple[Decimal, Decimal]:
    """(free, locked) of `asset` in `account`'s wallet, read without creating a record."""
    b = (st.balances if account == SPOT else st.margin.get(account, {})).get(asset)
    return (b.free, b.locked) if b is not None else (Decimal(0), Decimal(0))


def _fills_upto(o: POrder, fill: PFill | None) -> list[PFill]:
    if fill is None:
        return o.fills
    for i, f in enumerate(o.fills):
        if f is fill:
            return o.fills[: i + 1]
    return o.fills


def _executed_upto(o: POrder, fill: PFill | None) -> Decimal:
    """Cumulative filled quantity as of `fill` (the order's whole executed quantity otherwise)."""
    if fill is None:
        return o.executed_qty
    return sum((f.qty for f in _fills_upto(o, fill)), Decimal(0))


def _cum_quote_upto(o: POrder, fill: PFill | None) -> Decimal:
    if fill is None:
        return o.cum_quote
    return sum((f.price * f.qty for f in _fills_upto(o, fill)), Decimal(0))
