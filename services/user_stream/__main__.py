"""`python -m services.user_stream`: hold the exchange's user data stream (WebSocket API) and publish every
order update to `{EXEC_PREFIX}orders`.

Settings: the shared Config: BINANCE_WS_URL (default wss://ws-api.binance.com:443/ws-api/v3),
USER_STREAM_CHECK_SEC (REST cross-check period, default 10), BINANCE_BASE_URL / BINANCE_API_KEY /
BINANCE_API_SECRET / RECV_WINDOW / BINANCE_TIMEOUT_SEC, SYMBOL, REDIS_URL, EXEC_PREFIX.
"""
from __future__ import annotations

import sys

from shared.runtime import boot
from shared.service_loop import wait_for_filters
from services.user_stream.service import PROCESS, run


def main() -> int:
    rt = boot(PROCESS)
    # the configured wallet's client: spot, or the margin wallet whose orders the listenToken stream carries
    client = rt.client()
    try:
        wait_for_filters(rt, client)  # SYMBOL checked against exchangeInfo: an unknown one stops start-up
        run(rt, client)
    finally:
        client.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
