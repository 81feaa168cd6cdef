"""HTTP plumbing: ThreadingHTTPServer, HTTP/1.1 keep-alive, TCP_NODELAY, JSON replies."""
from __future__ import annotations

import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import msgspec

from services.paper_exchange.app import PaperApp, Request, Response
from services.paper_exchange.router import Router
from services.paper_exchange.settings import Settings

log = logging.getLogger("paper_exchange.http")
_encode = msgspec.json.Encoder().encode


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    router: Router

    def get_request(self) -> tuple[socket.socket, object]:
        sock, addr = super().get_request()
        # Small request/response pairs: Nagle + delayed ACK would add ~40 ms per round trip.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock, addr


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 120  # idle keep-alive connections are closed (clients reconnect), freeing their threads
    server: _Server

    def _serve(self) -> None:
        path, _, query = self.path.partition("?")
        raw_length = self.headers.get("Content-Length") or "0"
        if not raw_length.isdigit():
            self.send_error(400, "bad Content-Length")
            return
        length = int(raw_length)
        body = self.rfile.read(length).decode("utf-8", errors="replace") if length else ""
        req = Request(self.command, path, query, body, self.headers, self.client_address[0], time.time())
        try:
            resp = self.server.router.dispatch(req)
        except Exception:  # noqa: BLE001 - a bug must answer 500 (outcome unknown), not drop the socket
            log.exception("unhandled error on %s %s", req.method, req.path)
            resp = Response(500, {"code": -1000, "msg": "An unknown error occurred while processing the request."})
        data = _encode(resp.payload)
        if resp.hold_s:
            time.sleep(resp.hold_s)  # fault injection: the order is done, the reply is late
        try:
            self.send_response(resp.status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(data)))
            for k, v in resp.headers.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (e.g. its timeout); the request itself was already executed.
            log.info("client went away before the reply to %s %s", req.method, req.path)
            self.close_connection = True

    do_GET = do_POST = do_DELETE = do_PUT = _serve

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (stdlib signature)
        log.debug("%s %s", self.address_string(), format % args)


class PaperServer:
    """The paper exchange on a socket, with its replay thread. `start()` returns the bound port."""

    def __init__(self, s: Settings):
        self.app = PaperApp(s)
        self.httpd = _Server((s.host, s.port), _Handler)
        self.httpd.router = Router(self.app)
        self._threads: list[threading.Thread] = []

    @property
    def port(self) -> int:
        """The bound TCP port (useful with PAPER_PORT=0)."""
        return self.httpd.server_address[1]

    def start(self) -> int:
        """Serve and replay in background threads."""
        def serve() -> None:
            self.httpd.serve_forever(poll_interval=0.05)  # short poll: shutdown() returns fast
        for target, name in ((serve, "paper-http"), (self.app.run_replay, "paper-replay")):
            t = threading.Thread(target=target, name=name, daemon=True)
            t.start()
            self._threads.append(t)
        return self.port

    def stop(self) -> None:
        """Stop serving and replaying; close the socket."""
        self.app.stop()
        self.httpd.shutdown()
        self.httpd.server_close()
        for t in self._threads:
            t.join(timeout=5)
        self.app.close()
