"""Webhook alerts of any process, throttled per kind, trade and cause (shared.domain.alert_throttle, state in
Redis through AlertGate): one every INVAR_THROTTLE_SEC wall seconds (a higher severity at once), the next one
saying how many were held back, and `<kind>.recovered` once the cause is gone."""
from __future__ import annotations

import time
from typing import Any, Callable

import redis

from shared.adapters.alert_gate import AlertGate
from shared.domain.alert_throttle import recovery_details


class Alerts:
    """`notify()` an alert, `recovered()` when its cause is gone. Never blocks trading, never raises on Redis."""

    def __init__(self, r: redis.Redis, cfg: Any, log: Any, now: Callable[[], float]) -> None:
        self.r, self.cfg, self.log, self.now = r, cfg, log, now
        self.gate = AlertGate(r, cfg.EXEC_PREFIX, cfg.INVAR_THROTTLE_SEC)

    def notify(self, event: str, message: str, severity: str = "INFO", trade_key: str = "", cause: str = "",
               **details: Any) -> bool:
        """Queue a webhook alert (no-op without N8N_WEBHOOK_URL) unless held back. Returns whether it was sent.
        The throttle counts wall seconds: it protects a person, whose minutes do not speed up with a replay."""
        try:
            d = self.gate.allow(event, trade_key, cause, severity, time.time())
        except redis.RedisError as e:
            self.log.error("notify_throttle_failed", trade_key=trade_key, alert=event, error=str(e))
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

    def recovered(self, event: str, message: str, trade_key: str = "", cause: str = "") -> bool:
        """If an alert of this cause was sent, say `<event>.recovered` (INFO) with the count held back, and end
        the episode. Returns whether a recovery was sent."""
        try:
            rec = self.gate.recover(event, trade_key, cause)
        except redis.RedisError as e:
            self.log.error("notify_throttle_failed", trade_key=trade_key, alert=event, error=str(e))
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
                   "ts": self.now(), "details": {k: str(v) for k, v in details.items()}}
        try:
            enqueue_webhook(self.r, self.cfg, payload)
        except redis.RedisError as e:
            self.log.error("notify_enqueue_failed", trade_key=trade_key, error=str(e))
