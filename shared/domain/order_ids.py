"""Deterministic client order ids: `<trade_key>-<leg>-<attempt>`, within Binance's ^[a-zA-Z0-9-_]{1,36}$."""
from __future__ import annotations

import hashlib
import re
from datetime import datetime, timezone

_ALLOWED = re.compile(r"^[a-zA-Z0-9_-]{1,36}$")

# Leg codes kept short so the id stays within 36 characters.
LEG_CODES = {"entry": "en", "tp1": "t1", "tp2": "t2", "trail": "tr", "flatten": "fl",
             "tp1_list": "o1", "tp2_list": "o2", "tp1_tp": "p1", "tp2_tp": "p2", "tp1_stop": "s1", "tp2_stop": "s2"}


def trade_key_for(signal_key: str, signal_ts: float, kind: str) -> str:
    """A readable, unique trade key from the signal: yymmdd-HHMM-L|S-<6 hex of the signal key>."""
    t = datetime.fromtimestamp(signal_ts, tz=timezone.utc).strftime("%y%m%d-%H%M")
    h = hashlib.sha256(signal_key.encode()).hexdigest()[:6]
    return f"{t}-{'L' if kind == 'long' else 'S'}-{h}"


def client_id(trade_key: str, leg: str, attempt: int) -> str:
    """The client order id of `leg` (a LEG_CODES key) at `attempt`; raises if Binance would refuse it."""
    cid = f"{trade_key}-{LEG_CODES[leg]}-{attempt}"
    if not _ALLOWED.match(cid):
        raise ValueError(f"client order id {cid!r} is not valid for Binance")
    return cid


def trade_key_of(cid: str) -> str | None:
    """The trade key a client id belongs to, or None when it is not one of ours."""
    parts = cid.rsplit("-", 2)
    return parts[0] if len(parts) == 3 and parts[1] in LEG_CODES.values() and parts[2].isdigit() else None
