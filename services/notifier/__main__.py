"""`python -m services.notifier [--burst]`: an rq worker on the `{EXEC_PREFIX}notifications` queue, with a heartbeat.

The worker runs rq's scheduler too (retries with intervals are scheduled jobs). `--burst` processes what is
queued (including immediate retries) and exits: for tests and one-off draining.

Two connections: the worker's own, whose socket timeout is longer than rq's blocking dequeue (BLPOP of
worker_ttl - 15 s), and a short-timeout one for the heartbeat thread. redis-py 8 defaults socket_timeout to 5 s;
rq raises the pool's timeout only for connections created after the Worker is built, so a connection the
heartbeat had already put in a shared pool kept 5 s and every idle BLPOP ended in "Timeout reading from socket".
"""
from __future__ import annotations

import argparse
import sys
import threading

import redis
from rq.defaults import DEFAULT_WORKER_TTL

from services.notifier import jobs
from services.notifier.worker import make_worker
from shared.adapters.heartbeat import beat
from shared.adapters.notify import queue_name
from shared.jsonlog import JsonLogger
from shared.runtime import boot

PROCESS = "notifier"
# rq blocks in BLPOP for worker_ttl - 15 s; the socket must wait longer than that (rq itself uses + 10 s).
WORKER_SOCKET_TIMEOUT_SEC = DEFAULT_WORKER_TTL - 15 + 30


def _heartbeat_loop(r: redis.Redis, prefix: str, ttl: int, stop: threading.Event, log: JsonLogger) -> None:
    while not stop.is_set():
        try:
            beat(r, prefix, PROCESS, ttl, info={"queue": queue_name(prefix)})
        except redis.RedisError as e:
            log.warning("heartbeat_failed", error=e.__class__.__name__)
        stop.wait(1.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m services.notifier")
    ap.add_argument("--burst", action="store_true", help="process the queue and exit")
    args = ap.parse_args(argv)
    # rq handles SIGTERM/SIGINT itself (warm shut-down), so boot's handlers are replaced by the worker's.
    rt = boot(PROCESS, socket_timeout=WORKER_SOCKET_TIMEOUT_SEC)
    cfg, r, log = rt.cfg, rt.r, rt.log
    hb_r = rt.redis(socket_timeout=5)
    jobs.configure(cfg.N8N_WEBHOOK_URL, cfg.N8N_BASIC_AUTH_USER, cfg.N8N_BASIC_AUTH_PASSWORD)
    qname = queue_name(cfg.EXEC_PREFIX)
    stop = threading.Event()
    hb = threading.Thread(target=_heartbeat_loop, args=(hb_r, cfg.EXEC_PREFIX, cfg.HEARTBEAT_TTL_SEC, stop, log),
                          daemon=True, name="heartbeat")
    hb.start()
    log.info("worker", queue=qname, burst=args.burst, webhook_url_set=bool(cfg.N8N_WEBHOOK_URL),
             basic_auth_password_set=bool(cfg.N8N_BASIC_AUTH_PASSWORD))
    try:
        worker = make_worker(qname, r, log)
        worker.work(burst=args.burst, with_scheduler=not args.burst, logging_level="INFO")
    finally:
        stop.set()
        log.info("stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
