"""`python -m services.metrics`: serve `/metrics` (Prometheus text format) on METRICS_BIND:METRICS_PORT.

Reads Redis as the read-only user (REDIS_VIEWER_URL, else REDIS_URL) and the exchange's open orders at
scrape time, at most once every METRICS_CACHE_SEC. Never writes Redis, never trades."""
from __future__ import annotations

import os
import signal
import sys
import threading

import msgspec
from prometheus_client import CollectorRegistry, start_http_server

from services.executorctl.ctx import Ctx, Out
from services.metrics.collector import ExecutorCollector
from services.metrics.source import Source, lower_priority
from shared.adapters.credentials import CredentialsError, process_env
from shared.config import ConfigError, load_config
from shared.jsonlog import JsonLogger

PROCESS = "metrics"


def main() -> int:
    log = JsonLogger(PROCESS)
    try:
        cfg = load_config(process_env(PROCESS, os.environ))  # its Redis user (viewer), its secrets
    except (ConfigError, CredentialsError) as e:
        log.error("config_error", error=str(e))
        return 2
    lower_priority(log)
    viewer = msgspec.structs.replace(cfg, REDIS_URL=cfg.viewer_redis_url())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ExecutorCollector(Source(Ctx(viewer, Out(plain=True, as_json=True)), cfg.METRICS_CACHE_SEC)))
    server, thread = start_http_server(cfg.METRICS_PORT, addr=cfg.METRICS_BIND, registry=registry)
    log.info("start", bind=cfg.METRICS_BIND, port=cfg.METRICS_PORT, cache_sec=cfg.METRICS_CACHE_SEC)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    stop.wait()
    server.shutdown()
    log.info("stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
