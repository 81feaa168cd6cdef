"""A seeded synthetic BTC minute series in the aggregated.csv v2 shape (clearly labelled synthetic).

Used only while no real `*.aggregated.csv` is in ../shared/data/market/: about 95,000 USDC, minute
volatility around 0.05 %, regimes of drift so that trades can run to their targets.
"""
from __future__ import annotations

import random
from decimal import Decimal

from shared.domain.bars import Bar

SYNTHETIC_LABEL = "SYNTHETIC (seeded random walk, not real market data)"
_CENT = Decimal("0.01")
_QTY = Decimal("0.00001")


def generate(n_bars: int, seed: int = 7, start_ts: int = 1_736_798_400, start_price: float = 95_000.0) -> list[Bar]:
    """Return `n_bars` consecutive minute bars starting at `start_ts` (epoch s, minute aligned)."""
    rng = random.Random(seed)
    price = start_price
    drift, regime_left = 0.0, 0
    bars: list[Bar] = []
    for i in range(n_bars):
        if regime_left <= 0:
            drift = rng.choice((-0.0003, -0.00015, 0.0, 0.0, 0.00015, 0.0003))
            regime_left = rng.randint(60, 240)
        regime_left -= 1
        open_ = price
        ret = rng.gauss(drift, 0.0005)
        close = open_ * (1 + ret)
        wick_hi = abs(rng.gauss(0, 0.00025)) * open_
        wick_lo = abs(rng.gauss(0, 0.00025)) * open_
        high = max(open_, close) + wick_hi
        low = min(open_, close) - wick_lo
        trades = max(50, int(rng.gauss(1500, 400)))
        total = max(0.5, rng.gauss(15.0, 5.0))
        buy_share = min(0.9, max(0.1, 0.5 + ret * 300 + rng.gauss(0, 0.05)))
        total_d = Decimal(str(total)).quantize(_QTY)
        buy_d = (total_d * Decimal(str(buy_share))).quantize(_QTY)
        avg = (open_ + close + high + low) / 4
        bars.append(Bar(
            ts=start_ts + 60 * i, trades=trades, total_qty=total_d, buy_qty=buy_d, sell_qty=total_d - buy_d,
            avg_price=Decimal(str(avg)).quantize(_CENT), close=Decimal(str(close)).quantize(_CENT),
            high=Decimal(str(high)).quantize(_CENT), low=Decimal(str(low)).quantize(_CENT),
        ))
        price = close
    return bars
