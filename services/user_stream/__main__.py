"""`python -m services.user_stream`: hold the exchange's user data stream (WebSocket API) and publish every
order update to `{EXEC_PREFIX}orders`.

Settings: the shared Config: BINANCE_WS_URL (default wss://ws-api.binance.com:443/ws-api/v3),
USER_STREAM_CHECK_SEC (REST cross-check period, default 10), BINANCE_BASE_URL / BINANCE_API_KEY /
BINANCE_API_SECRET / RECV_WINDOW / BINANCE_TIMEOUT_SEC, SYMBOL, REDIS_URL, EXEC_PREFIX.
"""
from __future__ import annotations

import sys

from shared.adapters.binance_rest import BinanceClient
from shared.adapters.shared_backoff import RedisBackoff
from shared.runtime import boot
from services.user_stream.service import PROCESS, run


def main() -> int:
    rt = boot(PROCESS)
    cfg = rt.cfg
    # Spot client: the spot user data stream carries spot orders, so the cross-check reads spot orders too.
    client = BinanceClient(cfg.BINANCE_BASE_URL, cfg.BINANCE_API_KEY, cfg.BINANCE_API_SECRET,
                           recv_window=cfg.RECV_WINDOW, timeout=cfg.BINANCE_TIMEOUT_SEC,
                           backoff=RedisBackoff(rt.r, cfg.key("backoff")))
    try:
        run(rt, client)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
