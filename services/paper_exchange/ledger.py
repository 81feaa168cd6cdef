"""Balances: locking for open orders, releasing, and settling fills with fees. Pure, Decimal only."""
from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from services.paper_exchange.model import (
    SPOT, ZERO, ApiError, Balance, EngineState, PFill, PLock, POrder, PTrade, rejected,
)

_COMMISSION_Q = Decimal("0.00000001")
BNB = "BNB"
BNB_FEE_PAYS = Decimal("0.75")   # Binance's BNB fee discount: paying in BNB costs 75 % of the commission (25 % off)
INSUFFICIENT = "Account has insufficient balance for requested action."


def wallet(st: EngineState, account: str) -> dict[str, Balance]:
    """The balances of one wallet: SPOT, CROSS or ISOLATED."""
    return st.balances if account == SPOT else st.margin.setdefault(account, {})


def balance(st: EngineState, asset: str, account: str = SPOT) -> Balance:
    """The asset's balance record in `account` (created empty on first use)."""
    return wallet(st, account).setdefault(asset, Balance())


def require_free(st: EngineState, asset: str, amount: Decimal, account: str = SPOT) -> None:
    """-2010 unless `amount` of `asset` is free."""
    if balance(st, asset, account).free < amount:
        raise rejected(INSUFFICIENT)


def lock(st: EngineState, asset: str, per_unit: Decimal, qty: Decimal, holders: list[int], account: str = SPOT) -> int:
    """Move per_unit*qty of `asset` from free to locked for `holders`; return the lock id."""
    amount = per_unit * qty
    require_free(st, asset, amount, account)
    b = balance(st, asset, account)
    b.free -= amount
    b.locked += amount
    lock_id = st.next_lock_id
    st.next_lock_id += 1
    st.locks[lock_id] = PLock(asset=asset, per_unit=per_unit, qty=qty, holders=holders, account=account)
    return lock_id


def release(st: EngineState, lock_id: int, qty: Decimal) -> None:
    """Return the lock's share for `qty` base units to free."""
    lk = st.locks.get(lock_id)
    if lk is None:
        return
    qty = min(qty, lk.qty)
    amount = lk.per_unit * qty
    b = balance(st, lk.asset, lk.account)
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


def bnb_fee(st: EngineState, account: str, quote_qty: Decimal, fee_rate: Decimal,
            bnb_price: Decimal | None) -> Decimal | None:
    """The commission in BNB when BNB burn is on (`bnb_price`: quote per BNB, None = off): the fill's quote value
    at the rate less Binance's BNB discount (pays BNB_FEE_PAYS of it), in BNB; None when it is off or the wallet's
    free BNB cannot pay it (Binance then takes the commission from the received asset)."""
    if bnb_price is None or fee_rate <= 0:
        return None
    fee = (quote_qty * fee_rate * BNB_FEE_PAYS / bnb_price).quantize(_COMMISSION_Q, rounding=ROUND_HALF_UP)
    return fee if 0 < fee <= balance(st, BNB, account).free else None


def settle_fill(st: EngineState, o: POrder, qty: Decimal, price: Decimal, maker: bool,
                fee_rate: Decimal, base: str, quote: str, bnb_price: Decimal | None = None) -> PFill:
    """Execute `qty` of `o` at `price`: move balances, charge the fee (in BNB when BNB burn is on and the wallet
    has it, else on the received asset), record the trade."""
    if o.lock_id:
        release(st, o.lock_id, qty)
    quote_qty = price * qty
    if o.side == "BUY":
        paid, paid_amt, got, got_amt = quote, quote_qty, base, qty
    else:
        paid, paid_amt, got, got_amt = base, qty, quote, quote_qty
    require_free(st, paid, paid_amt, o.account)
    in_bnb = bnb_fee(st, o.account, quote_qty, fee_rate, bnb_price) if BNB not in (base, quote) else None
    fee_asset, fee = (BNB, in_bnb) if in_bnb is not None else (
        got, (got_amt * fee_rate).quantize(_COMMISSION_Q, rounding=ROUND_HALF_UP))
    balance(st, paid, o.account).free -= paid_amt
    balance(st, got, o.account).free += got_amt - (fee if fee_asset == got else 0)
    if fee_asset == BNB:
        balance(st, BNB, o.account).free -= fee
    trade_id = st.next_trade_id
    st.next_trade_id += 1
    o.executed_qty += qty
    o.cum_quote += quote_qty
    o.status = "FILLED" if o.executed_qty >= o.orig_qty else "PARTIALLY_FILLED"
    o.update_time = st.market_ms
    fill = PFill(price=price, qty=qty, commission=fee, commission_asset=fee_asset, trade_id=trade_id)
    o.fills.append(fill)
    st.trades.append(PTrade(
        id=trade_id, order_id=o.order_id, order_list_id=o.order_list_id, price=price, qty=qty, quote_qty=quote_qty,
        commission=fee, commission_asset=fee_asset, time=st.market_ms, is_buyer=o.side == "BUY", is_maker=maker,
        account=o.account,
    ))
    if o.lock_id:
        release_if_done(st, o.lock_id)
    return fill


def borrow(st: EngineState, account: str, asset: str, amount: Decimal) -> None:
    """Credit a loan to a margin wallet (the caller checked the limit)."""
    b = balance(st, asset, account)
    b.free += amount
    b.borrowed += amount


def repay(st: EngineState, account: str, asset: str, amount: Decimal) -> None:
    """Pay back `amount` of a loan from free balance: interest first, then principal."""
    b = balance(st, asset, account)
    if amount > b.borrowed + b.interest:
        raise ApiError(-3015, "Repay amount exceeds borrow amount.")
    if amount > b.free:
        raise ApiError(-3041, "Balance is not enough")
    b.free -= amount
    paid_interest = min(amount, b.interest)
    b.interest -= paid_interest
    b.borrowed -= amount - paid_interest


def net_value(st: EngineState, account: str, base: str, last: Decimal) -> tuple[Decimal, Decimal]:
    """(net asset value, liabilities) of a margin wallet in quote terms at the last price."""
    net = liab = ZERO
    for asset, b in wallet(st, account).items():
        px = last if asset == base else Decimal(1)
        net += (b.free + b.locked - b.borrowed - b.interest) * px
        liab += (b.borrowed + b.interest) * px
    return net, liab
