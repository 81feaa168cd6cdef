"""The commission rate the account pays, read from the exchange (`commissionRates` of the account)."""
from __future__ import annotations

from decimal import Decimal, InvalidOperation

import msgspec

from shared.adapters.binance_rest import BinanceClient, BinanceError


def pick_fee_rate(rates: dict[str, Decimal], fallback: Decimal) -> tuple[Decimal, str]:
    """(rate, source): the larger of maker and taker (take-profits are makers, stops and market closes takers),
    or `fallback` when the account does not say or says something impossible."""
    found = [rates[k] for k in ("maker", "taker") if k in rates]
    rate = max(found) if found else None
    if rate is None or not Decimal(0) <= rate < 1:
        return fallback, "fallback"
    return rate, "account"


def exit_fee_rate(client: BinanceClient, fallback: Decimal) -> tuple[Decimal, str]:
    """The commission rate from the account, or `fallback` when the account cannot be read."""
    try:
        rates = client.commission_rates()
    except (BinanceError, msgspec.DecodeError, InvalidOperation, OSError):
        return fallback, "fallback"
    return pick_fee_rate(rates, fallback)
