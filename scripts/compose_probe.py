"""What scripts/compose-check.sh asks inside a running container (docker exec -i CID python - CMD < this file).

peak     append one long PEAK line (at the replay clock, the exchange's last price) to DELTASCOUT_LOG
stops    print the exchange's open stop orders; exit 0 when they cover every coin held (the trade is protected),
         3 when not yet
watch F  poll `stops` every 0.1 s until file F exists (at most 300 s): exit 0 when every poll saw the same open
         stops covering every coin held, 3 at the first poll that did not (printed)
It reads the paper exchange's admin HTTP API (loopback, unsigned) and the stack's Redis, as an operator would.
"""
from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import redis

from services.paper_exchange.settings import split_symbol
from shared.adapters.credentials import redis_url_for

EXCHANGE = os.environ.get("BINANCE_BASE_URL", "http://127.0.0.1:8899")
STOP_TYPES = ("STOP_LOSS_LIMIT", "STOP_LOSS")
OPEN = ("NEW", "PARTIALLY_FILLED")


def _get(path: str):
    with urllib.request.urlopen(EXCHANGE + path, timeout=5) as resp:
        return json.loads(resp.read())


def peak() -> int:
    """Append the PEAK line; print it."""
    r = redis.Redis.from_url(redis_url_for("paper_exchange", os.environ))  # this container's own Redis user
    prefix = os.environ.get("EXEC_PREFIX", "exec:")
    clock_ms = int(r.get(prefix + "clock") or 0)
    if clock_ms <= 0:
        print(f"compose_probe: no replay clock at {prefix}clock yet", file=sys.stderr)
        return 2
    state = _get("/admin/state")
    last = state["last"]
    print(f"replaying {state['market_label']}")
    ts = datetime.fromtimestamp(clock_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = json.dumps({"ts": ts, "action": "PEAK", "source": "DeltaScout", "kind": "long",
                       "price": float(Decimal(last)), "delta": 123.4, "vol": 456.7, "imb": 0.61})
    log = Path(os.environ["DELTASCOUT_LOG"])
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    print(line)
    return 0


def _protection() -> tuple[bool, list[str], str]:
    """(protected, one line per open stop, summary): do the open stops cover every coin held?"""
    state = _get("/admin/state")
    base, _quote = split_symbol(state["symbol"])
    held = sum(Decimal(v) for v in state["balances"].get(base, {"free": "0", "locked": "0"}).values())
    open_stops = [o for o in _get("/admin/orders") if o.get("type") in STOP_TYPES and o.get("status") in OPEN]
    covered = sum((Decimal(o["origQty"]) - Decimal(o["executedQty"]) for o in open_stops), Decimal(0))
    lines = [f"stop {o['orderId']} {o['clientOrderId']} qty {o['origQty']} stop {o.get('stopPrice')}"
             for o in open_stops]
    step = Decimal(os.environ.get("QTY_STEP", "0.00001"))
    ok = held > 0 and covered > 0 and held - covered < step
    return ok, lines, f"{base} held {held}, covered by open stops {covered}: {'PROTECTED' if ok else 'not protected'}"


def stops() -> int:
    """Print the open stops (orderId clientOrderId qty stopPrice) and whether they cover the coins held."""
    ok, lines, summary = _protection()
    print("\n".join([*lines, summary]))
    return 0 if ok else 3


def watch(until: str) -> int:
    """Poll the protection until `until` exists; fail at the first poll that lost it or saw other stops."""
    first: list[str] | None = None
    polls = 0
    deadline = time.monotonic() + 300
    while not Path(until).exists() and time.monotonic() < deadline:
        ok, lines, summary = _protection()
        polls += 1
        first = lines if first is None else first
        if not ok or lines != first:
            print("\n".join([f"poll {polls}: protection lost or stops changed", *lines, summary]))
            return 3
        time.sleep(0.1)  # the polling interval; the end is the file (or the deadline), not this sleep
    print(f"{polls} polls, every one PROTECTED by the same {len(first or [])} stops")
    return 0 if polls and Path(until).exists() else 3


if __name__ == "__main__":
    if sys.argv[1:2] == ["watch"] and len(sys.argv) == 3:
        sys.exit(watch(sys.argv[2]))
    if sys.argv[1:] == ["peak"]:
        sys.exit(peak())
    if sys.argv[1:] == ["stops"]:
        sys.exit(stops())
    print("usage: python - peak|stops|watch FILE < scripts/compose_probe.py", file=sys.stderr)
    sys.exit(2)
