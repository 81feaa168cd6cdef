"""The watchdog loop: read (state, heartbeats, exchange, feed, Redis INFO), call the pure checks, write alerts.

It detects and alerts; it never places orders and never writes `{prefix}state`. The one exception is the
I13 kill switch, which SETs `{prefix}halt` (NX: an existing halt is left as it is) with a JSON reason.

Keys it owns: `{prefix}hb:watchdog`, `{prefix}watchdog:throttle` (the one alert throttle's records,
shared.domain.alert_throttle.Throttle, with the count held back per cause), `{prefix}watchdog:active` (the causes the last invariant run found: one that is gone is said "recovered"),
`{prefix}watchdog:i13` (the I13 debt episode), `{prefix}watchdog:halt_seen` (last halt value reported).
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

import msgspec
import redis

from shared.adapters.exec_log import ExecLog
from shared.adapters.heartbeat import beat, read_all
from shared.adapters.notify import enqueue_webhook, make_payload
from shared.adapters.redis_streams import publish
from shared.clock import Clock
from shared.config import Config
from shared.domain.alert_throttle import SEV_RANK, Throttle
from shared.domain.invariants import (
    DebtEpisode, ExchangeSnapshot, Finding, I13Result, check_all, check_heartbeats, check_redis_persistence,
    params_from_config,
)
from shared.domain.messages import Alert, Event
from shared.domain.redis_durability import check_redis_durability
from shared.domain.position import State, decode_state
from shared.jsonlog import JsonLogger
from services.watchdog.snapshot import FeedStatus, SnapshotProvider, read_feed_status

PROCESS = "watchdog"
DEFAULT_PROCESSES = ("signal_ingest", "position_engine", "exit_manager", "notifier")
_LOG_LEVEL = {"INFO": "info", "WARN": "warning", "ERROR": "error", "CRITICAL": "error"}


def _err(e: BaseException) -> str:
    return f"{e.__class__.__name__}: {e}"[:300]


class Watchdog:
    """One watchdog. `heartbeat_tick()` runs every wall second, `invariant_tick()` every INVAR_EVERY_SEC of the
    clock; `run()` drives both until `stop` is set."""

    def __init__(self, r: redis.Redis, cfg: Config, clock: Clock, provider: SnapshotProvider | None = None,
                 processes: tuple[str, ...] | list[str] = DEFAULT_PROCESSES, log: JsonLogger | None = None,
                 provider_factory: Callable[[], SnapshotProvider | None] | None = None,
                 wall: Callable[[], float] = time.time) -> None:
        self.r, self.cfg, self.clock = r, cfg, clock
        self._provider = provider
        self._provider_factory = provider_factory
        self._provider_error = ""
        self.processes = [p for p in processes if p and p != PROCESS]
        self.log = log or JsonLogger(PROCESS)
        self.wall = wall
        self.params = params_from_config(cfg)
        self.started_wall = wall()
        self._dead: set[str] = set()
        self._last_invar: float | None = None
        self._debts_cache: tuple[dict, float] | None = None  # (debts, clock time fetched)
        self._debts_fetched_mono = -1e18
        self._debts_error = ""
        self.throttle = Throttle(cfg.INVAR_THROTTLE_SEC, self._load_json("watchdog:throttle") or {})
        # EXEC_LOG's one writer (issue 22): the audit trail as the original's readable executor.log
        self.exec_log = ExecLog(r, cfg.key("events"), cfg.EXEC_LOG, cfg.LOG_MAX_LINES) if cfg.EXEC_LOG else None
        self._exec_log_error = ""

    # ---- small Redis helpers ---------------------------------------------------------------------------

    def _load_json(self, name: str) -> Any:
        raw = self.r.get(self.cfg.key(name))
        if raw is None:
            return None
        try:
            return msgspec.json.decode(raw)
        except msgspec.DecodeError:
            self.log.warning("bad_json_key", key=self.cfg.key(name))
            return None

    def _save_throttle(self) -> None:
        self.r.set(self.cfg.key("watchdog:throttle"), msgspec.json.encode(self.throttle.state))

    def _event(self, kind: str, at: float, trade_key: str = "", data: dict[str, Any] | None = None) -> None:
        publish(self.r, self.cfg.key("events"), Event(service=PROCESS, kind=kind, at=at, trade_key=trade_key,
                                                       data=data or {}), self.cfg.STREAM_MAXLEN)

    @property
    def provider(self) -> SnapshotProvider | None:
        """The exchange provider, built lazily (a failing build is retried on the next tick)."""
        if self._provider is None and self._provider_factory is not None:
            try:
                self._provider = self._provider_factory()
                self._provider_error = ""
            except Exception as e:  # noqa: BLE001 - reported as "unavailable", retried next tick
                self._provider_error = _err(e)
                self.log.warning("exchange_provider_unavailable", error=self._provider_error)
        return self._provider

    # ---- emission ---------------------------------------------------------------------------------------

    def emit(self, findings: list[Finding], at: float) -> list[Finding]:
        """Throttle, then log + `alerts` + `events` (+ webhook from ERROR up), stamped `at` (the clock's time).
        The throttle counts wall seconds: it protects a person, whose minutes do not speed up with a replay."""
        if not findings:
            return []
        out = [self._with_held_count(f) for f in self.throttle.filter(findings, self.wall())]
        for f in out:
            getattr(self.log, _LOG_LEVEL[f.severity])("finding", check=f.check, severity=f.severity,
                                                      message=f.message, trade_key=f.trade_key, subject=f.subject,
                                                      details=f.details)
            alert = Alert(check=f.check, severity=f.severity, message=f.message, at=at, trade_key=f.trade_key,
                          details={**f.details, **({"subject": f.subject} if f.subject else {})})
            with self.r.pipeline(transaction=False) as pipe:
                publish(pipe, self.cfg.key("alerts"), alert, self.cfg.STREAM_MAXLEN)
                publish(pipe, self.cfg.key("events"), Event(
                    service=PROCESS, kind="finding", at=at, trade_key=f.trade_key,
                    data={"check": f.check, "severity": f.severity, "message": f.message, "subject": f.subject,
                          "details": f.details}), self.cfg.STREAM_MAXLEN)
                pipe.execute()
            if SEV_RANK[f.severity] >= SEV_RANK["ERROR"]:
                self._webhook(f, at)
        self._save_throttle()
        return out

    def _with_held_count(self, f: Finding) -> Finding:
        """A finding let through after others of its cause were held back says how many."""
        n = self.throttle.released.get(Throttle.base_key(f), 0)
        if not n:
            return f
        return msgspec.structs.replace(f, message=f"{f.message} ({n} more held back since the last alert)",
                                       details={**f.details, "held_back": n})

    def _recoveries(self, findings: list[Finding], at: float) -> None:
        """Causes found by the previous invariant run and not by this one: one INFO "recovered" alert each (and a
        webhook when the alert was one), with the count held back. Kept in `{prefix}watchdog:active`."""
        prev: dict[str, list] = self._load_json("watchdog:active") or {}
        now_active = {Throttle.base_key(f): [f.check, f.severity, f.trade_key, f.subject] for f in findings}
        for base, (check, sev, tk, subject) in prev.items():
            if base in now_active:
                continue
            held = self.throttle.take_held(base)
            rec = Finding(check=check, severity="INFO", trade_key=tk, subject=f"{subject}:recovered",
                          message=f"{check} {subject} no longer found" + (f" ({held} alerts held back)" if held else ""),
                          details={"recovered": check, "was": sev, "held_back": held})
            self.emit([rec], at)
            if SEV_RANK.get(sev, 0) >= SEV_RANK["ERROR"]:
                self._webhook(rec, at)
        if now_active != prev:
            self.r.set(self.cfg.key("watchdog:active"), msgspec.json.encode(now_active))

    def _webhook(self, f: Finding, at: float) -> None:
        payload = make_payload(f"watchdog.{f.check}", f.severity, f.message, at, f.trade_key,
                               {"check": f.check, "subject": f.subject, **f.details})
        try:
            job = enqueue_webhook(self.r, self.cfg, payload)
            if job is None:
                self.log.info("webhook_skipped", reason="N8N_WEBHOOK_URL empty", check=f.check)
        except Exception as e:  # noqa: BLE001 - a notification problem must not stop the watchdog
            self.log.error("webhook_enqueue_failed", check=f.check, error=e.__class__.__name__)

    # ---- heartbeats and the halt flag (every wall second) -----------------------------------------------

    def heartbeat_tick(self) -> list[Finding]:
        """Own heartbeat; report dead processes (after a start-up grace of one deadline) and recoveries; report
        a change of the halt flag."""
        now = self.wall()       # liveness: heartbeats carry wall time and their deadline is wall seconds
        at = self.clock.now()   # what the records say: the one clock of every service (market time in replay)
        deadline = self.cfg.HEARTBEAT_TTL_SEC
        beat(self.r, self.cfg.EXEC_PREFIX, PROCESS, deadline, info={"processes": self.processes})
        emitted: list[Finding] = []
        if self.processes:
            try:
                hbs: dict[str, Any] = dict(read_all(self.r, self.cfg.EXEC_PREFIX, self.processes))
            except (msgspec.DecodeError, msgspec.ValidationError) as e:
                self.log.warning("heartbeat_undecodable", error=_err(e))
                hbs = {}
            findings = check_heartbeats(hbs, now, deadline) if now - self.started_wall >= deadline else []
            dead = {f.subject for f in findings}
            for proc in sorted(self._dead - dead):
                if hbs.get(proc) is not None:
                    self.log.info("process_recovered", process=proc)
                    self.emit([Finding(check="HB", severity="INFO", subject=f"{proc}:recovered",
                                       message=f"process {proc} heartbeat is back", details={"process": proc})], at)
            self._dead = dead
            emitted = self.emit(findings, at)
        self._watch_halt(at)
        return emitted

    def _watch_halt(self, now: float) -> None:
        raw = self.r.get(self.cfg.key("halt"))
        cur = raw.decode("utf-8", "replace") if raw is not None else ""
        seen_raw = self.r.get(self.cfg.key("watchdog:halt_seen"))
        seen = seen_raw.decode("utf-8", "replace") if seen_raw is not None else None
        if seen == cur:
            return
        self.r.set(self.cfg.key("watchdog:halt_seen"), cur)
        if seen is None and not cur:
            return  # first run with no halt: nothing changed that anyone needs to hear about
        present = bool(cur)
        self.log.info("halt_flag", present=present, value=cur)
        self._event("halt_flag", now, data={"present": present, "value": cur})
        publish(self.r, self.cfg.key("alerts"), Alert(
            check="HALT", severity="INFO", at=now, details={"present": present, "value": cur},
            message=("halt flag set: no new entries (" + cur + ")") if present else "halt flag cleared"),
            self.cfg.STREAM_MAXLEN)

    # ---- invariants (every INVAR_EVERY_SEC of the clock) ------------------------------------------------

    def due(self, now: float) -> bool:
        """Whether an invariant run is due at clock time `now` (a clock going backwards also triggers one)."""
        return self._last_invar is None or now - self._last_invar >= self.cfg.INVAR_EVERY_SEC \
            or now < self._last_invar

    def read_state(self) -> tuple[State | None, str]:
        raw = self.r.get(self.cfg.key("state"))
        if raw is None:
            return State(), ""
        try:
            return decode_state(raw), ""
        except (msgspec.DecodeError, msgspec.ValidationError, ValueError) as e:
            return None, _err(e)

    def snapshot(self, state: State, now: float) -> ExchangeSnapshot:
        """Fetch what the checks need from outside, and only that: open orders while a position is filled,
        margin debts (cached, at most every I13_EXCHANGE_MIN_INTERVAL_SEC) once a margin close is past grace,
        the feed while trailing or filled."""
        snap = ExchangeSnapshot(errors={})
        pos = state.position
        if pos is not None and (pos.status in ("OPEN_FILLED", "CLOSING") or pos.trailing):
            prov = self.provider
            if prov is None:
                snap.errors["open_orders"] = self._provider_error or "no exchange provider"
            else:
                try:
                    snap.open_orders = list(prov.open_orders())
                    snap.open_orders_at = now
                    if pos.side == "long" and hasattr(prov, "free_base"):
                        snap.free_base = prov.free_base()
                except Exception as e:  # noqa: BLE001 - the exchange being unreachable is a finding, not a crash
                    snap.errors["open_orders"] = _err(e)
        if pos is not None and (pos.status == "OPEN_FILLED" or pos.trailing):
            feed: FeedStatus = read_feed_status(self.cfg.AGG_CSV)
            snap.feed_configured, snap.feed_readable = feed.configured, feed.readable
            snap.feed_last_bar_ts, snap.feed_error = feed.last_bar_ts, feed.error
        lc = state.last_closed
        p = self.params
        if (p.trade_mode == "margin" and p.i13_exchange_check and lc is not None
                and now - lc.closed_at >= p.i13_grace_sec and (pos is None or pos.trade_key == lc.trade_key)):
            self._refresh_debts(now)
            if self._debts_cache is not None:
                snap.margin_debts, snap.margin_debts_at = self._debts_cache
            else:
                snap.errors["margin_debts"] = self._debts_error or "not fetched yet"
        return snap

    def _refresh_debts(self, now: float) -> None:
        mono = time.monotonic()
        if mono - self._debts_fetched_mono < self.cfg.I13_EXCHANGE_MIN_INTERVAL_SEC:
            return
        self._debts_fetched_mono = mono
        prov = self.provider
        if prov is None:
            self._debts_cache, self._debts_error = None, self._provider_error or "no exchange provider"
            return
        try:
            self._debts_cache = (dict(prov.margin_debts()), now)
            self._debts_error = ""
        except Exception as e:  # noqa: BLE001 - reported by I13 as "unavailable"
            self._debts_cache, self._debts_error = None, _err(e)

    def invariant_tick(self, now: float | None = None) -> I13Result:
        """One run of every check; returns the combined result (findings before throttling)."""
        now = self.clock.now() if now is None else now
        self._last_invar = now
        findings: list[Finding] = []
        try:
            info = self.r.info("persistence")
            findings += check_redis_persistence(info)
            sec, usec = self.r.time()
            findings += check_redis_durability(info, sec + usec / 1e6)
        except redis.RedisError as e:
            self.log.warning("redis_info_failed", error=_err(e))
        state, why = self.read_state()
        if state is None:
            findings.append(Finding(check="STATE", severity="ERROR", subject="decode",
                                    message=f"state document cannot be decoded: {why}"))
            self.emit(findings, now)
            return I13Result(findings=findings)
        snap = self.snapshot(state, now)
        if "open_orders" in snap.errors:
            findings.append(Finding(check="EXCH", severity="WARN", subject="open_orders",
                                    trade_key=state.position.trade_key if state.position else "",
                                    message=f"exchange open orders unavailable: {snap.errors['open_orders']}"))
        ep_raw = self._load_json("watchdog:i13")
        episode = None
        if ep_raw is not None:
            try:
                episode = msgspec.convert(ep_raw, DebtEpisode)
            except msgspec.ValidationError:
                episode = None
        result = check_all(state, snap, now, self.params, episode)
        findings += result.findings
        self._save_episode(episode, result.episode)
        if result.halt:
            self._halt(result, state, now)
        self.emit(findings, now)
        self._recoveries(findings, now)
        return I13Result(findings=findings, episode=result.episode, halt=result.halt, halt_reason=result.halt_reason)

    def _save_episode(self, old: DebtEpisode | None, new: DebtEpisode | None) -> None:
        if new is None:
            if old is not None:
                self.r.delete(self.cfg.key("watchdog:i13"))
        elif new != old:
            self.r.set(self.cfg.key("watchdog:i13"), msgspec.json.encode(new))

    def _halt(self, result: I13Result, state: State, now: float) -> None:
        """The I13 kill switch: SET NX `{prefix}halt`. Says why in the log, the events and the alert."""
        lc = state.last_closed
        reason = {"by": PROCESS, "check": "I13", "reason": result.halt_reason, "at": now,
                  "trade_key": lc.trade_key if lc else "",
                  "debts": result.episode.debts if result.episode else {}}
        created = self.r.set(self.cfg.key("halt"), msgspec.json.encode(reason), nx=True)
        if created:
            self.log.error("halt_set", why=result.halt_reason, trade_key=reason["trade_key"],
                           debts=reason["debts"], setting="INVAR_KILL_ON_DEBT")
        else:
            self.log.warning("halt_already_set", why=result.halt_reason, trade_key=reason["trade_key"])
        self._event("halt_set" if created else "halt_already_set", now, reason["trade_key"], reason)

    def exec_log_tick(self) -> None:
        """Append the new audit-trail events to EXEC_LOG; a file error is logged once per distinct error."""
        if self.exec_log is None:
            return
        try:
            self.exec_log.follow()
            self._exec_log_error = ""
        except (OSError, msgspec.DecodeError, msgspec.ValidationError) as e:
            if _err(e) != self._exec_log_error:
                self._exec_log_error = _err(e)
                self.log.error("exec_log_error", path=self.cfg.EXEC_LOG, error=self._exec_log_error)

    # ---- loop -------------------------------------------------------------------------------------------

    def run(self, stop: threading.Event | None = None) -> None:
        """Heartbeats every wall second; invariants when due on the clock. Survives Redis outages."""
        stop = stop or threading.Event()
        self.log.info("start", processes=self.processes, every_sec=self.cfg.INVAR_EVERY_SEC,
                      invariants=self.cfg.INVAR_ENABLED, heartbeat_deadline_sec=self.cfg.HEARTBEAT_TTL_SEC,
                      trade_mode=self.cfg.TRADE_MODE, kill_on_debt=self.cfg.INVAR_KILL_ON_DEBT)
        while not stop.is_set():
            t0 = time.monotonic()
            try:
                self.heartbeat_tick()
                self.exec_log_tick()
                if self.cfg.INVAR_ENABLED:
                    now = self.clock.now()
                    if self.due(now):
                        self.invariant_tick(now)
            except redis.RedisError as e:
                self.log.error("redis_error", error=_err(e))
            except Exception as e:  # noqa: BLE001 - a watchdog that dies on one odd input watches nothing
                self.log.error("tick_failed", error=_err(e))
            stop.wait(max(0.05, 1.0 - (time.monotonic() - t0)))
        self.log.info("stop")
