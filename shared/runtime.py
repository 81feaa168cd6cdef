"""What every service process needs, built once from the Config: Redis, clock, logger, state store,
exchange client, audit trail and alerts."""
from __future__ import annotations

import signal
import sys
import time
from typing import Any

import redis

from shared.adapters.alert_gate import AlertGate
from shared.adapters.binance_rest import BinanceClient
from shared.adapters.heartbeat import Beater
from shared.adapters.redis_streams import publish
from shared.adapters.shared_backoff import RedisBackoff
from shared.adapters.state_store import StateStore
from shared.clock import Clock, ReplayClock, make_clock
from shared.config import Config, ConfigError, load_config
from shared.domain.alert_throttle import recovery_details
from shared.domain.messages import Event
from shared.domain.position import State, decode_state
from shared.jsonlog import JsonLogger


class Runtime:
    """The edges of one service process."""

    def __init__(self, cfg: Config, process: str) -> None:
        self.cfg, self.process = cfg, process
        self.log = JsonLogger(process)
        self.r = redis.Redis.from_url(cfg.REDIS_URL, socket_timeout=10, socket_connect_timeout=5,
                                      health_check_interval=30)
        self.clock: Clock = make_clock(cfg.CLOCK, self.r, cfg.EXEC_PREFIX)
        self.store = StateStore(self.r, cfg.key("state"), cfg.STATE_FN, process, cfg.STREAM_MAXLEN, self.clock.now)
        self.beater = Beater(self.r, cfg.EXEC_PREFIX, process, cfg.HEARTBEAT_TTL_SEC)
        self.alert_gate = AlertGate(self.r, cfg.EXEC_PREFIX, cfg.INVAR_THROTTLE_SEC)
        self.stopping = False

    def client(self) -> BinanceClient:
        """A Binance client for the configured endpoint, sharing 429 back-off through Redis."""
        margin = None
        if self.cfg.TRADE_MODE == "margin":
            margin = "isolated" if self.cfg.MARGIN_ISOLATED else "cross"
        return BinanceClient(self.cfg.BINANCE_BASE_URL, self.cfg.BINANCE_API_KEY, self.cfg.BINANCE_API_SECRET,
                             recv_window=self.cfg.RECV_WINDOW, timeout=self.cfg.BINANCE_TIMEOUT_SEC,
                             backoff=RedisBackoff(self.r, self.cfg.key("backoff")), margin=margin)

    def event(self, kind: str, trade_key: str = "", level: str = "info", **data: Any) -> Event:
        """Record a decision or an exchange call: `events` stream + one JSON log line."""
        ev = Event(service=self.process, kind=kind, at=self.clock.now(), trade_key=trade_key, data=data)
        publish(self.r, self.cfg.key("events"), ev, self.cfg.STREAM_MAXLEN)
        getattr(self.log, level if level in ("info", "warning", "error") else "info")(kind, trade_key=trade_key, **data)
        return ev

    def notify(self, event: str, message: str, severity: str = "INFO", trade_key: str = "", cause: str = "",
               **details: Any) -> bool:
        """Queue a webhook alert (never blocks trading; no-op without N8N_WEBHOOK_URL), throttled per kind
        (`event`), trade and `cause`: one every INVAR_THROTTLE_SEC wall seconds (a higher severity at once), the
        next one saying how many were held back. Returns whether it was sent."""
        try:
            d = self.alert_gate.allow(event, trade_key, cause, severity, time.time())
        except redis.RedisError as e:
            self.log.error("notify_throttle_failed", trade_key=trade_key, event=event, error=str(e))
            return False  # no Redis: the queue is unreachable too
        if not d.send:
            self.log.info("alert_held_back", trade_key=trade_key, alert=event, cause=cause, held_back=d.held_back,
                          throttle_sec=self.cfg.INVAR_THROTTLE_SEC)
            return False
        if d.held_back:
            message = f"{message} ({d.held_back} more held back since the last alert)"
            details = {**details, "held_back": d.held_back}
        self._enqueue(event, severity, message, trade_key, {**details, **({"cause": cause} if cause else {})})
        return True

    def notify_recovered(self, event: str, message: str, trade_key: str = "", cause: str = "") -> bool:
        """The cause of `event` alerts is gone: if one was sent, say so (`<event>.recovered`, INFO) with the count
        of alerts held back. Returns whether a recovery was sent."""
        try:
            rec = self.alert_gate.recover(event, trade_key, cause)
        except redis.RedisError as e:
            self.log.error("notify_throttle_failed", trade_key=trade_key, event=event, error=str(e))
            return False
        if rec is None:
            return False
        det = recovery_details(rec, time.time())
        self._enqueue(f"{event}.recovered", "INFO", f"{message} (after {det['held_back_total']} alerts held back)",
                      trade_key, {**det, **({"cause": cause} if cause else {})})
        return True

    def _enqueue(self, event: str, severity: str, message: str, trade_key: str, details: dict[str, Any]) -> None:
        from shared.adapters.notify import enqueue_webhook  # late: the notifier is optional at import time

        payload = {"event": event, "severity": severity, "message": message, "trade_key": trade_key,
                   "ts": self.clock.now(), "details": {k: str(v) for k, v in details.items()}}
        try:
            enqueue_webhook(self.r, self.cfg, payload)
        except redis.RedisError as e:
            self.log.error("notify_enqueue_failed", trade_key=trade_key, error=str(e))

    def load_gate(self) -> tuple[State, float, bool]:
        """The state, the clock's time and the halt flag in one round trip (a signal's hot path)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.cfg.key("state"))
        pipe.exists(self.cfg.key("halt"))
        replay = isinstance(self.clock, ReplayClock)
        if replay:
            pipe.get(self.cfg.key("clock"))
        res = pipe.execute()
        state = decode_state(res[0]) if res[0] is not None else self.store.load()  # load() restores a lost state
        now = (int(res[2]) / 1000.0 if res[2] is not None else time.time()) if replay else self.clock.now()
        return state, now, bool(res[1])

    def halted(self) -> bool:
        """True while the halt flag is set (no new entries)."""
        return bool(self.r.exists(self.cfg.key("halt")))

    def install_signal_handlers(self) -> None:
        """SIGTERM/SIGINT finish the current iteration, then the loop exits."""
        def _stop(signum: int, _frame: object) -> None:
            self.stopping = True
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)


def boot(process: str) -> Runtime:
    """Load the config (exit 2 with the message on a bad setting) and build the runtime."""
    try:
        cfg = load_config()
    except ConfigError as e:
        print(f"{process}: configuration error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    rt = Runtime(cfg, process)
    rt.install_signal_handlers()
    rt.log.info("start", config=cfg.redacted())
    return rt
