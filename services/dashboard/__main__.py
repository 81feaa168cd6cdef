"""`python -m services.dashboard`: the read-only web dashboard on DASHBOARD_BIND:DASHBOARD_PORT.

Refuses to start without DASHBOARD_TOKEN unless it is the local paper stack (the exchange and the dashboard
both on loopback). Reads Redis as the read-only user (REDIS_VIEWER_URL, else REDIS_URL)."""
from __future__ import annotations

import os

import sys
from urllib.parse import urlsplit

import msgspec
import uvicorn

from services.dashboard.app import make_app
from services.dashboard.view import DashboardView
from services.executorctl.ctx import Ctx, Out
from services.metrics.source import lower_priority
from shared.adapters.credentials import CredentialsError, process_env
from shared.config import Config, ConfigError, load_config
from shared.jsonlog import JsonLogger

PROCESS = "dashboard"
LOOPBACK = ("127.0.0.1", "localhost", "::1")


def token_policy(cfg: Config) -> None:
    """Raise ConfigError when the dashboard would be open to anyone."""
    if cfg.DASHBOARD_TOKEN:
        if len(cfg.DASHBOARD_TOKEN) < 16:
            raise ConfigError("DASHBOARD_TOKEN must be at least 16 characters (e.g. `openssl rand -hex 16`)")
        return
    paper = urlsplit(cfg.BINANCE_BASE_URL).hostname in LOOPBACK
    if not (paper and cfg.DASHBOARD_BIND in LOOPBACK):
        raise ConfigError("DASHBOARD_TOKEN is not set: the dashboard needs a login token unless it is the local "
                          "paper stack (BINANCE_BASE_URL and DASHBOARD_BIND on loopback); set DASHBOARD_TOKEN")


def main() -> int:
    log = JsonLogger(PROCESS)
    try:
        cfg = load_config(process_env(PROCESS, os.environ))  # its Redis user (viewer), its secrets
        token_policy(cfg)
    except (ConfigError, CredentialsError) as e:
        log.error("config_error", error=str(e))
        print(f"dashboard: {e}", file=sys.stderr)
        return 2
    lower_priority(log)
    viewer = msgspec.structs.replace(cfg, REDIS_URL=cfg.viewer_redis_url())
    view = DashboardView(Ctx(viewer, Out(plain=True, as_json=True)), cfg.METRICS_CACHE_SEC)
    log.info("start", bind=cfg.DASHBOARD_BIND, port=cfg.DASHBOARD_PORT, login=bool(cfg.DASHBOARD_TOKEN))
    uvicorn.run(make_app(view, cfg.DASHBOARD_TOKEN), host=cfg.DASHBOARD_BIND, port=cfg.DASHBOARD_PORT,
                log_level="warning", access_log=False)
    log.info("stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
