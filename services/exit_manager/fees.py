"""The commission rate the exits pay, read once at start from the exchange's account (`commissionRates`)."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

import msgspec

from shared.adapters.binance_rest import BinanceClient, BinanceError


def exit_fee_rate(client: BinanceClient, fallback: Decimal) -> tuple[Decimal, str]:
    """(rate, source): the larger of the account's maker and taker commission rates (take-profits are makers,
    stops and market closes takers), or `fallback` when the account cannot be read or does not say."""
    try:
        rates = client.commission_rates()
        found = [rates[k] for k in ("maker", "taker") if k in rates]
    except (BinanceError, msgspec.DecodeError, InvalidOperation, OSError):
        return fallback, "fallback"
    rate = max(found) if found else None
    if rate is None or not Decimal(0) <= rate < 1:
        return fallback, "fallback"
    return rate, "account"
