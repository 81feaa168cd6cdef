"""`python -m services.notifier [--burst]`: an rq worker on the `notifications` queue, with a heartbeat.

The worker runs rq's scheduler too (retries with intervals are scheduled jobs). `--burst` processes what is
queued (including immediate retries) and exits: for tests and one-off draining.
"""
from __future__ import annotations

import argparse
import sys
import threading

import redis
from rq import Queue, Worker

from shared.adapters.heartbeat import beat
from shared.adapters.notify import QUEUE_NAME
from shared.config import ConfigError, load_config
from shared.jsonlog import JsonLogger

PROCESS = "notifier"


def _heartbeat_loop(r: redis.Redis, prefix: str, ttl: int, stop: threading.Event, log: JsonLogger) -> None:
    while not stop.is_set():
        try:
            beat(r, prefix, PROCESS, ttl, info={"queue": QUEUE_NAME})
        except redis.RedisError as e:
            log.warning("heartbeat_failed", error=e.__class__.__name__)
        stop.wait(1.0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m services.notifier")
    ap.add_argument("--burst", action="store_true", help="process the queue and exit")
    args = ap.parse_args(argv)
    log = JsonLogger(PROCESS)
    try:
        cfg = load_config()
    except ConfigError as e:
        log.error("config_error", error=str(e))
        return 2
    r = redis.Redis.from_url(cfg.REDIS_URL)
    stop = threading.Event()
    hb = threading.Thread(target=_heartbeat_loop, args=(r, cfg.EXEC_PREFIX, cfg.HEARTBEAT_TTL_SEC, stop, log),
                          daemon=True, name="heartbeat")
    hb.start()
    log.info("start", queue=QUEUE_NAME, burst=args.burst, basic_auth_password_set=bool(cfg.N8N_BASIC_AUTH_PASSWORD))
    try:
        worker = Worker([Queue(QUEUE_NAME, connection=r)], connection=r)
        worker.work(burst=args.burst, with_scheduler=not args.burst, logging_level="INFO")
    finally:
        stop.set()
        log.info("stop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
