"""`python -m services.watchdog`: invariants, heartbeats and Redis health -> alerts (and the I13 halt flag).

Settings: the shared Config (INVAR_*, I13_*, HEARTBEAT_TTL_SEC, CLOCK, N8N_*, BINANCE_*...). The processes
whose heartbeats are watched are the WATCHDOG_PROCESSES setting (comma-separated; default signal_ingest,
position_engine, exit_manager, notifier).
"""
from __future__ import annotations

import signal
import sys
import threading

import redis

from shared.clock import make_clock
from shared.config import Config, ConfigError, load_config
from shared.domain.invariants import split_symbol
from shared.jsonlog import JsonLogger
from services.watchdog.service import PROCESS, Watchdog
from services.watchdog.snapshot import BinanceSnapshotProvider


def provider_factory(cfg: Config):
    """Build the read-only exchange provider from the shared Binance client (lazily, on first need)."""
    def build() -> BinanceSnapshotProvider:
        from shared.adapters.binance_rest import BinanceClient
        from shared.adapters.signing import config_signer
        margin = None if cfg.TRADE_MODE != "margin" else ("isolated" if cfg.MARGIN_ISOLATED else "cross")
        client = BinanceClient(cfg.BINANCE_BASE_URL, cfg.BINANCE_API_KEY, cfg.BINANCE_API_SECRET,
                               recv_window=cfg.RECV_WINDOW, timeout=cfg.BINANCE_TIMEOUT_SEC, margin=margin,
                               signer=config_signer(cfg.BINANCE_API_SECRET, cfg.BINANCE_PRIVATE_KEY_FILE,
                                                    cfg.BINANCE_PRIVATE_KEY_PASSPHRASE))
        return BinanceSnapshotProvider(client, cfg.SYMBOL, split_symbol(cfg.SYMBOL), margin)
    return build


def main() -> int:
    log = JsonLogger(PROCESS)
    try:
        cfg = load_config()
    except ConfigError as e:
        log.error("config_error", error=str(e))
        return 2
    processes = cfg.WATCHDOG_PROCESSES
    r = redis.Redis.from_url(cfg.REDIS_URL)
    clock = make_clock(cfg.CLOCK, r, cfg.EXEC_PREFIX)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    wd = Watchdog(r, cfg, clock, processes=processes, log=log, provider_factory=provider_factory(cfg))
    log.info("config", settings=cfg.redacted())
    wd.run(stop)
    return 0


if __name__ == "__main__":
    sys.exit(main())
