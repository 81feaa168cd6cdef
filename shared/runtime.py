"""What every service process needs, built once from the Config: Redis, clock, logger, state store,
exchange client, audit trail and alerts."""
from __future__ import annotations

import os
import signal
import sys
import time
from typing import IO, Any, Callable

import redis

from shared.adapters.alerts import Alerts
from shared.adapters.binance_rest import BinanceClient
from shared.adapters.credentials import CredentialsError, process_env
from shared.adapters.heartbeat import Beater
from shared.adapters.order_budget import RedisOrderBudget
from shared.adapters.redis_streams import publish
from shared.adapters.shared_backoff import RedisBackoff
from shared.adapters.signing import config_signer
from shared.adapters.state_store import StateStore
from shared.clock import Clock, ReplayClock, make_clock
from shared.config import Config, ConfigError, load_config, replaced_settings_note, require_live_keys
from shared.domain.messages import Event
from shared.domain.position import State, decode_state
from shared.jsonlog import JsonLogger


class Runtime:
    """The edges of one service process."""

    def __init__(self, cfg: Config, process: str, log_stream: IO[str] | None = None,
                 socket_timeout: float = 10.0) -> None:
        self.cfg, self.process = cfg, process
        self.log = JsonLogger(process, log_stream)
        self.r = self.redis(socket_timeout=socket_timeout)
        self.clock: Clock = make_clock(cfg.CLOCK, self.r, cfg.EXEC_PREFIX)
        self.store = StateStore(self.r, cfg.key("state"), cfg.STATE_FN, process, cfg.STREAM_MAXLEN, self.clock.now,
                                keep_halt=process == "position_engine")
        self.beater = Beater(self.r, cfg.EXEC_PREFIX, process, cfg.HEARTBEAT_TTL_SEC)
        self.alerts = Alerts(self.r, cfg, self.log, self.clock.now)
        self.stopping = False
        self.order_budget: RedisOrderBudget | None = None   # the last client's (set by `client`)

    def redis(self, socket_timeout: float = 10.0) -> redis.Redis:
        """A new connection as this process's own Redis user (cfg.REDIS_URL carries its credentials)."""
        return redis.Redis.from_url(self.cfg.REDIS_URL, socket_timeout=socket_timeout, socket_connect_timeout=5,
                                    health_check_interval=30)

    def client(self) -> BinanceClient:
        """A Binance client for the configured endpoint, sharing 429 back-off through Redis. With a real exchange
        and no (or the paper) API key, start-up stops naming the variable (exit 2)."""
        try:
            require_live_keys(self.cfg)
        except ConfigError as e:
            print(f"{self.process}: configuration error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        margin = None
        if self.cfg.TRADE_MODE == "margin":
            margin = "isolated" if self.cfg.MARGIN_ISOLATED else "cross"
        c = self.cfg
        try:  # the key file is read where a process signs: a bad one stops start-up like any bad setting
            signer = config_signer(c.BINANCE_API_SECRET, c.BINANCE_PRIVATE_KEY_FILE, c.BINANCE_PRIVATE_KEY_PASSPHRASE)
        except ConfigError as e:
            print(f"{self.process}: configuration error: {e}", file=sys.stderr)
            raise SystemExit(2) from None
        budget = RedisOrderBudget(self.r, c.key("order_count"), c.ORDER_COUNT_LIMIT_10S, c.ORDER_COUNT_LIMIT_1D,
                                  c.ORDER_COUNT_EXIT_RESERVE,
                                  # the paper exchange's windows run on market time in a lock-step replay only
                                  now=self.clock.now if c.REPLAY_LOCKSTEP else time.time)
        self.order_budget = budget   # load_gate reads its counts in the signal's one round trip
        return BinanceClient(c.BINANCE_BASE_URL, c.BINANCE_API_KEY, c.BINANCE_API_SECRET,
                             recv_window=c.RECV_WINDOW, timeout=c.BINANCE_TIMEOUT_SEC,
                             backoff=RedisBackoff(self.r, c.key("backoff")), margin=margin, signer=signer,
                             order_budget=budget)

    def event(self, kind: str, trade_key: str = "", level: str = "info", **data: Any) -> Event:
        """Record a decision or an exchange call: `events` stream + one JSON log line."""
        ev = Event(service=self.process, kind=kind, at=self.clock.now(), trade_key=trade_key, data=data)
        publish(self.r, self.cfg.key("events"), ev, self.cfg.STREAM_MAXLEN)
        getattr(self.log, level if level in ("info", "warning", "error") else "info")(kind, trade_key=trade_key, **data)
        return ev

    def notify(self, event: str, message: str, severity: str = "INFO", trade_key: str = "", cause: str = "",
               **details: Any) -> bool:
        """Queue a webhook alert, throttled per kind, trade and cause (shared.adapters.alerts.Alerts.notify)."""
        return self.alerts.notify(event, message, severity, trade_key, cause, **details)

    def notify_recovered(self, event: str, message: str, trade_key: str = "", cause: str = "") -> bool:
        """The cause of `event` alerts is gone: say so once (Alerts.recovered)."""
        return self.alerts.recovered(event, message, trade_key, cause)

    def load_gate(self) -> tuple[State, float, bool]:
        """The state, the clock's time and the halt flag in one round trip (a signal's hot path)."""
        pipe = self.r.pipeline(transaction=False)
        pipe.get(self.cfg.key("state"))
        pipe.exists(self.cfg.key("halt"))
        replay = isinstance(self.clock, ReplayClock)
        if replay:
            pipe.get(self.cfg.key("clock"))
        if self.order_budget is not None:   # the IP's order count for this signal's entry, in the same round trip
            pipe.hgetall(self.cfg.key("order_count"))
        res = pipe.execute()
        if self.order_budget is not None:
            self.order_budget.prime(res[-1])
        state = decode_state(res[0]) if res[0] is not None else self.store.load()  # load() restores a lost state
        now = (int(res[2]) / 1000.0 if res[2] is not None else time.time()) if replay else self.clock.now()
        # a state restored from the snapshot just now brought its halt flag back (StateStore.load)
        return state, now, bool(res[1]) or (res[0] is None and state.halt is not None)

    def halted(self) -> bool:
        """True while the halt flag is set (no new entries)."""
        return bool(self.r.exists(self.cfg.key("halt")))

    def install_signal_handlers(self, on_stop: Callable[[], None] | None = None) -> None:
        """SIGTERM/SIGINT finish the current iteration, then the loop exits (`on_stop` too, when given)."""
        def _stop(signum: int, _frame: object) -> None:
            self.stopping = True
            if on_stop is not None:
                on_stop()
        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)


def boot(process: str, *, log_stream: IO[str] | None = None, socket_timeout: float = 10.0,
         on_stop: Callable[[], None] | None = None) -> Runtime:
    """The one start-up of every service process: its settings (with its own Redis user and only the secrets it
    needs, shared.adapters.credentials), Redis, clock, logger and signal handlers. A bad setting or a missing
    credential exits 2 with the message."""
    try:
        cfg = load_config(process_env(process, os.environ))
    except (ConfigError, CredentialsError) as e:
        print(f"{process}: configuration error: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    rt = Runtime(cfg, process, log_stream, socket_timeout)
    rt.install_signal_handlers(on_stop)
    rt.log.info("start", config=cfg.redacted())
    replaced = replaced_settings_note()
    if replaced:   # issue 22: the original's cadences are accepted, and start-up says what does their work now
        rt.log.info("original_settings_replaced", settings=replaced)
    return rt
