"""`python -m services.paper_exchange`: start the paper exchange from environment settings."""
from __future__ import annotations

import logging
import os
import signal
import sys
import threading

from services.paper_exchange.server import PaperServer
from services.paper_exchange.settings import SettingsError, from_env
from services.paper_exchange.ws_api import WsApiServer
from shared.adapters.credentials import CredentialsError, process_env


def main() -> int:
    """Run until SIGTERM/SIGINT."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        # its own Redis user for the market clock, its API keys from the stack's secrets file
        settings = from_env(process_env("paper_exchange", os.environ, var="PAPER_CLOCK_REDIS_URL"))
    except (SettingsError, CredentialsError) as e:
        print(f"paper_exchange: bad setting: {e}", file=sys.stderr)
        return 2
    server = PaperServer(settings)
    ws = WsApiServer(server.app, settings.host, settings.ws_port)
    port = server.start()
    try:
        ws_port: int | None = ws.start()
    except RuntimeError as e:  # e.g. the port is taken: REST trading goes on, user_stream falls back to REST
        logging.getLogger("paper_exchange").error("WebSocket API not started: %s", e)
        ws_port = None
    # Printed on stdout (flushed) so a parent using PAPER_PORT=0 / PAPER_WS_PORT=0 can read the ports.
    print(f"paper_exchange listening on http://{settings.host}:{port}", flush=True)
    if ws_port is not None:
        print(f"paper_exchange ws listening on ws://{settings.host}:{ws_port}", flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    signal.signal(signal.SIGINT, lambda *_: done.set())
    done.wait()
    ws.stop()
    server.stop()
    logging.getLogger("paper_exchange").info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
