"""`python -m services.demo`: start the stack under supervisord on the paper exchange, send one PEAK
signal, narrate the trade's life from the audit trail, print a summary, stop the stack."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import msgspec
import redis
import requests

from shared.domain.moments import find_moment
from shared.adapters.credentials import process_env, supervisord_launch
from shared.adapters.market_files import find_market_file, load_bars
from shared.adapters.redis_acl import VIEWER
from shared.adapters.redis_streams import decode_fields
from shared.config import load_config, symbol_filters
from shared.domain.bars import format_ts
from shared.domain.messages import Event
from shared.narration import describe

HOME = Path(__file__).resolve().parents[2]
SERVICES = ("signal_ingest", "position_engine", "exit_manager", "watchdog", "notifier", "user_stream")
TIMEOUT_SEC = 110


def _say(text: str) -> None:
    print(text, flush=True)


def _ctl(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([str(HOME / ".venv/bin/supervisorctl"), "-c", str(HOME / "supervisord.conf"), *args],
                          capture_output=True, text=True, env=os.environ.copy())


def _wait(cond, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        time.sleep(0.05)  # polling interval of a condition with a deadline
    raise TimeoutError(f"demo: timed out waiting for {what}")


def _prepare(run_dir: Path) -> tuple[Path, str, int, float, Decimal]:
    cfg = load_config()
    market, label = find_market_file(HOME.parent / "shared" / "data" / "market", HOME / "var" / "market")
    bars, _bad = load_bars(market)
    f = symbol_filters(cfg)
    m = find_moment(bars, cfg, f)
    sig_bar = bars[m.index]
    speed = max(20.0, (m.bars_to_tp2 + m.bars_after_tp2 + 25) * 60 / 35)  # about 45 s of trade
    _say(f"market data: {market.name} [{label}]")
    _say(f"demo moment: signal at the close of {format_ts(sig_bar.ts)} (bar {m.index}), replay at {speed:.0f}x")
    if run_dir.exists():
        shutil.rmtree(run_dir)
    return market, format_ts(bars[m.index + 1].ts), m.index, speed, sig_bar.close


def main() -> int:
    run_dir = Path(os.environ["EXEC_RUN_DIR"])
    market, start_ts, index, speed, close = _prepare(run_dir)
    for sub in ("logs", "feed", "state", "paper", "redis", "supervisor"):
        (run_dir / sub).mkdir(parents=True, exist_ok=True)
    # BTCUSDC a basis point under BTCUSDT, as it often trades: the plan is made in the feed's USDT prices and
    # re-priced by k = mid(BTCUSDC) / mid(BTCUSDT), as the original does.
    os.environ.setdefault("PAPER_BASIS_BPS", "-1")
    os.environ.update(PAPER_MARKET_CSV=str(market), PAPER_START_TS=start_ts, PAPER_HISTORY_BARS="400",
                      PAPER_SPEED="0")
    Path(os.environ["DELTASCOUT_LOG"]).touch()
    t0 = time.monotonic()
    argv, env = supervisord_launch(os.environ)  # Redis closed, no secret in supervisord's environment
    subprocess.run(argv, check=True, env=env)
    keep = os.environ.get("DEMO_KEEP") == "1"
    try:
        return _drive(run_dir, speed, close, t0)
    finally:
        if keep:
            _say(f"stack left running (DEMO_KEEP=1): EXEC_RUN_DIR={run_dir} scripts/ctl.sh status; stop with: make down")
            _say_window(load_config())
        else:
            _ctl("shutdown")


def _say_window(cfg) -> None:
    """Where the operator's window is (the dashboard and /metrics, run by supervisord beside the services)."""
    login = "/?token=$DASHBOARD_TOKEN" if cfg.DASHBOARD_TOKEN else "/  (no token: the local paper stack)"
    _say(f"dashboard    http://{cfg.DASHBOARD_BIND}:{cfg.DASHBOARD_PORT}{login}")
    _say(f"metrics      http://{cfg.METRICS_BIND}:{cfg.METRICS_PORT}/metrics")


def _drive(run_dir: Path, speed: float, close: Decimal, t0: float) -> int:
    cfg = load_config(process_env(VIEWER, os.environ))  # the demo only reads: as the `viewer` Redis user
    r = redis.Redis.from_url(cfg.REDIS_URL)
    _wait(lambda: _ping(r), 15, "redis")
    _wait(lambda: all(r.exists(f"{cfg.EXEC_PREFIX}hb:{s}") for s in SERVICES), 30, "services' heartbeats")
    _say(f"stack up under supervisord in {time.monotonic() - t0:.1f}s: redis, paper_exchange, " + ", ".join(SERVICES))
    _say_window(cfg)
    events = f"{cfg.EXEC_PREFIX}events"
    newest = r.xrevrange(events, "+", "-", count=1)
    last = newest[0][0] if newest else "0-0"  # a cursor: narrate from here on
    admin = cfg.BINANCE_BASE_URL + "/admin"
    now_ms = int(r.get(f"{cfg.EXEC_PREFIX}clock") or 0)
    ts = datetime.fromtimestamp(now_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    line = msgspec.json.encode({"ts": ts, "action": "PEAK", "source": "DeltaScout", "kind": "long",
                                "price": float(close), "delta": 123.4, "vol": 456.7, "imb": 0.61}).decode()
    with open(cfg.DELTASCOUT_LOG, "a") as fh:
        fh.write(line + "\n")
    _say(f"signal   {line}")
    started = False
    deadline = time.monotonic() + TIMEOUT_SEC
    closed = None
    while time.monotonic() < deadline and closed is None:
        res = r.xread({events: last}, block=500, count=100)
        for _stream, rows in res or []:
            for eid, fields in rows:
                last = eid
                if fields.get(b"type") != b"event":
                    continue
                ev = decode_fields(fields)
                assert isinstance(ev, Event)
                text = describe(ev)
                if text:
                    _say(text)
                if ev.kind == "leg_placed" and not started:
                    started = True
                    requests.post(admin + "/speed", json={"speed": speed}, timeout=5)
                    _say(f"         market replay resumed at {speed:.0f}x")
                if ev.kind == "position_closed":
                    closed = ev
    if closed is None:
        _say("demo: the trade did not close within the time limit; see var/run/logs/*.log")
        return 1
    _summary(r, cfg, admin, closed, t0)
    return 0


def _ping(r: redis.Redis) -> bool:
    try:
        return bool(r.ping())
    except redis.ConnectionError:
        return False


def _summary(r: redis.Redis, cfg, admin: str, closed: Event, t0: float) -> None:
    orders = requests.get(admin + "/orders", timeout=5).json()
    orders = orders.get("orders", orders) if isinstance(orders, dict) else orders
    open_left = [o for o in orders if o.get("status") in ("NEW", "PARTIALLY_FILLED")]
    filled = [o for o in orders if o.get("status") == "FILLED"]
    d = closed.data
    _say("")
    _say("summary")
    _say(f"  trade        {closed.trade_key}: {d['reason']}, PnL {d['pnl']} USDC ({d['r']} R) before fees")
    _say(f"  exchange     {len(orders)} orders, {len(filled)} filled, {len(open_left)} still open")
    for o in orders:
        _say(f"    {o.get('clientOrderId', ''):<28} {o.get('type', ''):<16} {o.get('side', ''):<4} "
             f"{o.get('status', ''):<9} qty {o.get('executedQty', '')}/{o.get('origQty', '')}")
    _say(f"  wall time    {time.monotonic() - t0:.1f}s")
    _say(f"  logs         {Path(os.environ['EXEC_RUN_DIR']) / 'logs'}/*.log (one JSON event per line)")
    _say(f"  audit trail  DEMO_KEEP=1 make demo, then: source scripts/env.sh; redis-cli -u \"$REDIS_VIEWER_URL\" "
         f"XRANGE {cfg.EXEC_PREFIX}events - +")


if __name__ == "__main__":
    sys.exit(main())
