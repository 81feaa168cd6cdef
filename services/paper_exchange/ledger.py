"""Balances: locking for open orders, releasing, and settling fills with fees. Pure, Decimal only."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from services.paper_exchange.model import ZERO, Balance, EngineState, PFill, PLock, POrder, PTrade, rejected

_COMMISSION_Q = Decimal("0.00000001")
INSUFFICIENT = "Account has insufficient balance for requested action."


def balance(st: EngineState, asset: str) -> Balance:
    """The asset's balance record (created empty on first use)."""
    return st.balances.setdefault(asset, Balance())


def require_free(st: EngineState, asset: str, amount: Decimal) -> None:
    """-2010 unless `amount` of `asset` is free."""
    if balance(st, asset).free < amount:
        raise rejected(INSUFFICIENT)


def lock(st: EngineState, asset: str, per_unit: Decimal, qty: Decimal, holders: list[int]) -> int:
    """Move per_unit*qty of `asset` from free to locked for `holders`; return the lock id."""
    amount = per_unit * qty
    require_free(st, asset, amount)
    b = balance(st, asset)
    b.free -= amount
    b.locked += amount
    lock_id = st.next_lock_id
    st.next_lock_id += 1
    st.locks[lock_id] = PLock(asset=asset, per_unit=per_unit, qty=qty, holders=holders)
    return lock_id


def release(st: EngineState, lock_id: int, qty: Decimal) -> None:
    """Return the lock's share for `qty` base units to free."""
    lk = st.locks.get(lock_id)
    if lk is None:
        return
    qty = min(qty, lk.qty)
    amount = lk.per_unit * qty
    b = balance(st, lk.asset)
    b.locked -= amount
    b.free += amount
    lk.qty -= qty


def release_if_done(st: EngineState, lock_id: int) -> None:
    """Drop the lock (returning what is left) once none of its holders is open any more."""
    lk = st.locks.get(lock_id)
    if lk is None or any(st.orders[h].is_open for h in lk.holders):
        return
    release(st, lock_id, lk.qty)
    del st.locks[lock_id]


def settle_fill(st: EngineState, o: POrder, qty: Decimal, price: Decimal, maker: bool,
                fee_rate: Decimal, base: str, quote: str) -> PFill:
    """Execute `qty` of `o` at `price`: move balances, charge the fee on the received asset, record the trade."""
    if o.lock_id:
        release(st, o.lock_id, qty)
    quote_qty = price * qty
    if o.side == "BUY":
        paid, paid_amt, got, got_amt = quote, quote_qty, base, qty
    else:
        paid, paid_amt, got, got_amt = base, qty, quote, quote_qty
    fee = (got_amt * fee_rate).quantize(_COMMISSION_Q, rounding=ROUND_HALF_UP)
    require_free(st, paid, paid_amt)
    balance(st, paid).free -= paid_amt
    balance(st, got).free += got_amt - fee
    trade_id = st.next_trade_id
    st.next_trade_id += 1
    o.executed_qty += qty
    o.cum_quote += quote_qty
    o.status = "FILLED" if o.executed_qty >= o.orig_qty else "PARTIALLY_FILLED"
    o.update_time = st.market_ms
    fill = PFill(price=price, qty=qty, commission=fee, commission_asset=got, trade_id=trade_id)
    o.fills.append(fill)
    st.trades.append(PTrade(
        id=trade_id, order_id=o.order_id, order_list_id=o.order_list_id, price=price, qty=qty, quote_qty=quote_qty,
        commission=fee, commission_asset=got, time=st.market_ms, is_buyer=o.side == "BUY", is_maker=maker,
    ))
    if o.lock_id:
        release_if_done(st, o.lock_id)
    return fill


def total(st: EngineState, asset: str) -> Decimal:
    """free + locked of `asset`."""
    b = st.balances.get(asset)
    return (b.free + b.locked) if b else ZERO
