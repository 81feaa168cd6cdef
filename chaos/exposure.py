"""Per trade, the longest time any filled quantity had no stop on the exchange, from the exchange's own records
(GET /admin/orders: each order's creation `time`, its last `updateTime` (cancel, expiry or last fill) and
status; myTrades: the time of every fill). Pure.

The records are in market time (ms of the replay), whose resolution is one price point. Inside one market
millisecond the order of two records is unknown, so changes at the same instant are applied worst first (cover
removed and quantity filled before cover added and quantity sold): an instant where a stop is cancelled and its
replacement placed counts as a gap of that instant. Each gap [start, end] (market ms) is then bounded in wall
time by the clock samples (`wall_before(end) - wall_after(start)`): an upper bound."""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Callable

import msgspec

from shared.domain.orders import Trade

STOP_TYPES = ("STOP_LOSS_LIMIT", "STOP_LOSS")
ENDED = ("CANCELED", "EXPIRED", "REJECTED", "EXPIRED_IN_MATCH", "FILLED")


class Gap(msgspec.Struct, frozen=True):
    start_ms: int            # market ms the quantity became (partly) unprotected
    end_ms: int | None       # market ms it was covered again (None: still open at the end of the records)
    max_unprotected: Decimal


def _d(v: Any) -> Decimal:
    return Decimal(str(v)) if v is not None and v != "" else Decimal(0)


def _fills(o: dict, trades: dict[int, list[Trade]]) -> list[tuple[int, Decimal, Decimal, str]]:
    """(ms, qty, commission, commission asset) of each fill of `o`; without trades, all at its updateTime."""
    ts = trades.get(o["orderId"]) or []
    if ts:
        return [(t.time, t.qty, t.commission, t.commission_asset) for t in ts]
    q = _d(o["executedQty"])
    return [(int(o["updateTime"]), q, Decimal(0), "")] if q > 0 else []


def changes(orders: list[dict], trades: dict[int, list[Trade]], base_asset: str) -> list[tuple[int, int, Decimal, Decimal]]:
    """(ms, rank, change of the held quantity, change of the resting stop quantity) of one trade's records.
    rank 0 = the worse changes of an instant (entry fills, stops cancelled or expired), applied and judged before
    rank 1 (exit fills, stops placed). A stop's own fill lowers both at once; an OCO stop expired by the fill of
    its take-profit at that instant goes with that fill (the exchange does both in one step)."""
    entries = [o for o in orders if "-en-" in o["clientOrderId"]]
    if not entries:
        return []
    entry_side = entries[0]["side"]
    fills_of = {o["orderId"]: _fills(o, trades) for o in orders}
    fill_ms_of_list: dict[int, set[int]] = {}
    for o in orders:
        if o.get("orderListId", -1) >= 0:
            fill_ms_of_list.setdefault(o["orderListId"], set()).update(ms for ms, *_ in fills_of[o["orderId"]])
    out: list[tuple[int, int, Decimal, Decimal]] = []
    for o in orders:
        is_entry = "-en-" in o["clientOrderId"]
        is_stop = o["type"] in STOP_TYPES and o["side"] != entry_side
        for ms, q, fee, fee_asset in fills_of[o["orderId"]]:
            if is_entry:
                out.append((ms, 0, q - (fee if fee_asset == base_asset and entry_side == "BUY" else Decimal(0)),
                            Decimal(0)))
            elif o["side"] != entry_side:
                out.append((ms, 1, -q, -q if is_stop else Decimal(0)))
        if not is_stop:
            continue
        out.append((int(o["time"]), 1, Decimal(0), _d(o["origQty"])))
        if o["status"] in ENDED and o["status"] != "FILLED":
            end = int(o["updateTime"])
            sibling_fill = end in fill_ms_of_list.get(o.get("orderListId", -1), set()) - \
                {ms for ms, *_ in fills_of[o["orderId"]]}
            out.append((end, 1 if sibling_fill else 0, Decimal(0), -(_d(o["origQty"]) - _d(o["executedQty"]))))
    return sorted(out, key=lambda c: (c[0], c[1]))


def gaps(orders: list[dict], trades: dict[int, list[Trade]], qty_step: Decimal, base_asset: str) -> list[Gap]:
    """Every interval where the held quantity exceeded the resting stops by a step or more (judged after each
    rank group of an instant)."""
    held = cover = Decimal(0)
    out: list[Gap] = []
    start: int | None = None
    worst = Decimal(0)
    cs = changes(orders, trades, base_asset)
    for i, (ms, rank, dh, dc) in enumerate(cs):
        held += dh
        cover += dc
        if i + 1 < len(cs) and cs[i + 1][:2] == (ms, rank):
            continue  # judge once the whole group of this instant and rank is applied
        bare = held - max(cover, Decimal(0))
        if bare >= qty_step:
            if start is None:
                start, worst = ms, bare
            worst = max(worst, bare)
        elif start is not None:
            out.append(Gap(start, ms, worst))
            start = None
    if start is not None:
        out.append(Gap(start, None, worst))
    return out


def worst_gap_sec(gs: list[Gap], wall_after: Callable[[int], float | None], wall_before: Callable[[int], float | None],
                  last_wall: float | None) -> tuple[float | None, Gap | None]:
    """The longest gap in wall seconds (upper bound), and which one; (None, None) when none is measurable."""
    best: tuple[float | None, Gap | None] = (None, None)
    for g in gs:
        lo = wall_after(g.start_ms)
        hi = wall_before(g.end_ms) if g.end_ms is not None else last_wall
        if lo is None or hi is None:
            continue
        sec = max(0.0, hi - lo)
        if best[0] is None or sec > best[0]:
            best = (sec, g)
    return best
