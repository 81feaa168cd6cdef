"""Market statistics the paper exchange serves from its replayed bars: the 24 h ticker and a depth book.
Pure functions over bars and prices (the symbol's basis is applied by the caller's `scale`)."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from shared.domain.bars import Bar

DAY_MS = 86_400_000
_Q8 = Decimal("0.00000001")


def _d8(v: Decimal) -> str:
    return format(v.quantize(_Q8, rounding=ROUND_HALF_UP), "f")


def day_window(bars: Sequence[Bar], played: int, now_ms: int) -> tuple[int, int]:
    """[lo, hi) indexes of the completed bars (the first `played`) that closed within the 24 h before `now_ms`."""
    hi = played
    lo = hi
    while lo > 0 and (bars[lo - 1].ts + 60) * 1000 > now_ms - DAY_MS:
        lo -= 1
    return lo, hi


def ticker_24h(symbol: str, bars: Sequence[Bar], lo: int, hi: int, last: Decimal, book: tuple[Decimal, Decimal],
               now_ms: int, scale: Callable[[Decimal], Decimal], full: bool = True) -> dict[str, Any]:
    """GET /api/v3/ticker/24hr for one symbol (FULL or MINI) over bars[lo:hi] plus the current `last` price.

    Open is the close before the window; volume the bars' TotalQty; quote volume TotalQty x AvgPrice; trade ids
    count the file's trades from its first bar (so lastId - firstId + 1 == count)."""
    window = bars[lo:hi]
    open_px = scale(bars[lo - 1].close) if lo > 0 else (scale(window[0].avg_price) if window else last)
    high = max([scale(b.high) for b in window] + [last])
    low = min([scale(b.low) for b in window] + [last])
    volume = sum((b.total_qty for b in window), Decimal(0))
    quote = sum((b.total_qty * scale(b.avg_price) for b in window), Decimal(0))
    count = sum(b.trades for b in window)
    first_id = sum(b.trades for b in bars[:lo])
    out: dict[str, Any] = {"symbol": symbol, "openPrice": _d8(open_px), "highPrice": _d8(high), "lowPrice": _d8(low),
                           "lastPrice": _d8(last), "volume": _d8(volume), "quoteVolume": _d8(quote),
                           "openTime": now_ms - DAY_MS, "closeTime": now_ms,
                           "firstId": first_id if count else -1, "lastId": first_id + count - 1 if count else -1,
                           "count": count}
    if not full:
        return out
    change = last - open_px
    pct = (change / open_px * 100).quantize(Decimal("0.001"), rounding=ROUND_HALF_UP) if open_px else Decimal(0)
    last_bar = window[-1] if window else None
    last_qty = last_bar.total_qty / last_bar.trades if last_bar is not None and last_bar.trades else Decimal(0)
    return {"symbol": symbol, "priceChange": _d8(change), "priceChangePercent": format(pct, "f"),
            "weightedAvgPrice": _d8(quote / volume if volume else last), "prevClosePrice": _d8(open_px),
            "lastPrice": _d8(last), "lastQty": _d8(last_qty), "bidPrice": _d8(book[0]), "bidQty": "1.00000000",
            "askPrice": _d8(book[1]), "askQty": "1.00000000", **{k: v for k, v in out.items()
                                                               if k not in ("symbol", "lastPrice")}}


def depth(book: tuple[Decimal, Decimal], tick: Decimal, limit: int, update_id: int) -> dict[str, Any]:
    """GET /api/v3/depth: `limit` levels a tick apart each side of the book (bid/ask as bookTicker shows them),
    1 unit of base asset at each level (the quantity bookTicker shows)."""
    bid, ask = book
    bids = [[_d8(bid - i * tick), "1.00000000"] for i in range(limit) if bid - i * tick > 0]
    asks = [[_d8(ask + i * tick), "1.00000000"] for i in range(limit)]
    return {"lastUpdateId": update_id, "bids": bids, "asks": asks}
