"""Margin: give back what the engine borrowed for the trade (MARGIN_BORROW_MODE=manual) once it is closed."""
from __future__ import annotations

from decimal import Decimal

from shared.adapters.binance_rest import BinanceClient, BinanceError
from shared.domain.position import Position
from shared.runtime import Runtime


def side_effect(rt: Runtime) -> str:
    """sideEffectType of exit orders: AUTO_REPAY in auto mode (what a fill brings in pays the trade's loan, and an
    exit never borrows: with MARGIN_SIDE_EFFECT's AUTO_BORROW_REPAY a sell of coins that are gone would open a
    short); manual mode repays after the close."""
    return "AUTO_REPAY" if rt.cfg.MARGIN_BORROW_MODE == "auto" else "NO_SIDE_EFFECT"


def repay_after_close(rt: Runtime, client: BinanceClient, pos: Position) -> None:
    """Repay the trade's manual borrow from what the wallet holds of that asset. Idempotent: it repays only the
    debt above what was owed before the borrow, so a restart between repay and close repays nothing twice.
    Debt that cannot be repaid (e.g. the exit's commission was taken in the borrowed asset) is alerted; the
    watchdog's I13 keeps watching it."""
    if not client.margin or rt.cfg.MARGIN_BORROW_MODE != "manual" or pos.margin_borrowed <= 0:
        return
    asset, symbol = pos.margin_borrow_asset, rt.cfg.SYMBOL if client.margin == "isolated" else None
    try:
        wallet = client.margin_wallet(rt.cfg.SYMBOL)
        bal = wallet.get(asset)
        owed = (bal.borrowed + bal.interest - pos.margin_debt_before) if bal else Decimal(0)
        amount = min(owed, bal.free) if bal else Decimal(0)
        if amount > 0:
            client.repay(asset, amount, symbol)
    except BinanceError as e:
        rt.event("margin_repay_failed", pos.trade_key, level="error", asset=asset, error=str(e))
        rt.notify("margin_repay_failed", f"repay of {asset} after close failed: {e}", "ERROR", pos.trade_key,
                  cause=asset)
        return
    left = owed - amount
    rt.event("margin_repaid", pos.trade_key, level="warning" if left > 0 else "info", asset=asset, amount=amount,
             debt_left=left)
    if left > 0:
        rt.notify("margin_debt_left", f"{left} {asset} still borrowed after the trade closed", "WARN", pos.trade_key,
                  cause=asset)
