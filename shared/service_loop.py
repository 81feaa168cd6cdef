"""Pieces of a service main loop shared by the engine and the exit manager."""
from __future__ import annotations

import sys
import time
from typing import Callable

import redis

from shared.adapters.binance_rest import BinanceClient, BinanceError, Rejected
from shared.adapters.redis_streams import Entry, GroupConsumer
from shared.domain.messages import StreamMessage
from shared.domain.symbol import SymbolFilters
from shared.runtime import Runtime


def handle_entry(rt: Runtime, e: Entry, fn: Callable[[StreamMessage], None], consumer: GroupConsumer) -> None:
    """Process one stream entry, then ack it (its effects are durable in Redis by then). An undecodable
    entry is acked with an error event so it cannot block the group."""
    if e.msg is None:
        rt.event("stream_entry_undecodable", level="error", stream=consumer.stream, id=e.id, error=e.error)
    else:
        fn(e.msg)
    consumer.ack(e.id)


INVALID_SYMBOL = -1121  # Binance: "Invalid symbol."


def unknown_symbol(rt: Runtime, detail: str) -> SystemExit:
    """SYMBOL is not one the exchange lists: a bad setting, so start-up stops (exit 2) naming it."""
    msg = f"SYMBOL={rt.cfg.SYMBOL!r} is not listed by the exchange at {rt.cfg.BINANCE_BASE_URL} ({detail}); " \
          f"allowed: a symbol of its exchangeInfo"
    rt.log.error("config_error", error=msg)
    print(f"{rt.process}: configuration error: {msg}", file=sys.stderr)
    return SystemExit(2)


def exchange_symbol_filters(rt: Runtime, client: BinanceClient) -> SymbolFilters:
    """exchangeInfo for SYMBOL; an unknown symbol raises SystemExit(2) (see unknown_symbol)."""
    try:
        f = client.exchange_info(rt.cfg.SYMBOL)
    except Rejected as e:
        if e.code == INVALID_SYMBOL:
            raise unknown_symbol(rt, str(e)) from None
        raise
    if f.symbol != rt.cfg.SYMBOL:
        raise unknown_symbol(rt, f"exchangeInfo answered for {f.symbol!r}")
    return f


def wait_for_filters(rt: Runtime, client: BinanceClient) -> SymbolFilters:
    """Measure the server-time offset and read the symbol's filters, retrying with back-off until the
    exchange answers (or the process is asked to stop). An unknown SYMBOL stops start-up (exit 2)."""
    delay = 0.2
    while not rt.stopping:
        try:
            client.sync_time()
            f = exchange_symbol_filters(rt, client)
            rt.event("filters_loaded", symbol=f.symbol, tick=f.tick_size, step=f.step_size, min_qty=f.min_qty,
                     min_notional=f.min_notional)
            return f
        except (BinanceError, OSError, redis.RedisError) as e:
            rt.log.warning("exchange_unreachable", error=str(e), retry_in=delay)
            time.sleep(delay)  # back-off between connection attempts, not synchronisation
            delay = min(delay * 2, 5.0)
    raise SystemExit(0)


def run_guarded(rt: Runtime, step: Callable[[], None]) -> None:
    """Call `step` until the process is asked to stop. A lost Redis connection is logged once per outage
    and retried with back-off (the state in Redis is the truth, so nothing is lost by waiting)."""
    delay = 0.1
    while not rt.stopping:
        try:
            step()
            delay = 0.1
        except (redis.ConnectionError, redis.TimeoutError) as e:
            if delay == 0.1:
                rt.log.error("redis_unavailable", error=str(e))
            time.sleep(delay)  # back-off while Redis is away
            delay = min(delay * 2, 5.0)
