"""`python -m services.watchdog`: invariants, heartbeats and Redis health -> alerts (and the I13 halt flag).

Settings: the shared Config (INVAR_*, I13_*, HEARTBEAT_TTL_SEC, CLOCK, N8N_*, BINANCE_*...). The processes
whose heartbeats are watched are the WATCHDOG_PROCESSES setting (comma-separated; default signal_ingest,
position_engine, exit_manager, notifier).
"""
from __future__ import annotations

import sys
import threading
from typing import Callable

from shared.domain.invariants import split_symbol
from shared.runtime import Runtime, boot
from services.watchdog.service import PROCESS, Watchdog
from services.watchdog.snapshot import BinanceSnapshotProvider


def provider_factory(rt: Runtime) -> Callable[[], BinanceSnapshotProvider]:
    """The read-only exchange provider on the runtime's Binance client (so it shares the stack's 429/418
    back-off), built lazily on first need."""
    def build() -> BinanceSnapshotProvider:
        cfg = rt.cfg
        margin = None if cfg.TRADE_MODE != "margin" else ("isolated" if cfg.MARGIN_ISOLATED else "cross")
        return BinanceSnapshotProvider(rt.client(), cfg.SYMBOL, split_symbol(cfg.SYMBOL), margin)
    return build


def main() -> int:
    stop = threading.Event()
    rt = boot(PROCESS, on_stop=stop.set)
    wd = Watchdog(rt.r, rt.cfg, rt.clock, processes=rt.cfg.WATCHDOG_PROCESSES, log=rt.log,
                  provider_factory=provider_factory(rt))
    wd.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
