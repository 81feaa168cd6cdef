"""`executorctl replay`: real history through the real processes on the paper exchange, faster than real time.

A private stack in a run directory: its own redis-server, the paper exchange on `--agg` (CLOCK=replay: every
process follows the replayed market time), and signal_ingest, position_engine, exit_manager, watchdog, user_stream
as separate processes. The market moves in lock-step (REPLAY_LOCKSTEP, shared/adapters/lockstep.py): this command
plays one price point, appends the `--signals` lines due by then to DELTASCOUT_LOG, and waits until every process
has acted on it before the next; `--speed` only caps how fast (max: no cap), so the trades do not depend on it.
It starts where asked (plan_start), ends when the data ends or when every line has been read and no position is
left; then the report: the trades, every line of --signals with its outcome (replay_lines.py), and the stack stops.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import msgspec
import redis
import requests

from services.executorctl import replay_lines, replay_settings
from services.executorctl.ctx import CtlError, Ctx, Out, fmt_ts, jsonable
from services.executorctl.procs import die_with_parent
from services.executorctl.replay_drive import LOCKSTEP_WAIT_SEC, drive
from services.executorctl.replay_lines import SignalLine, read_signals
from shared.adapters.credentials import CredentialsError, private_stack, process_env, with_user
from shared.adapters.market_files import load_bars
from shared.adapters.redis_acl import ADMIN
from shared.config import ConfigError, load_config
from shared.domain.bars import AGG_HEADER_LINE, BadHeader, BadRow, parse_ts

HOME = Path(__file__).resolve().parents[2]
# A private replay stack keeps its whole audit trail: the report rebuilds every trade from it (issue 25). Its
# memory is bounded by the run (printed at the end: a month of trades is a few MiB).
REPLAY_STREAM_MAXLEN = str(10**9)
SERVICES = ("signal_ingest", "position_engine", "exit_manager", "watchdog", "user_stream")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ReplayStack:
    """The private stack's processes, all children of this command."""

    def __init__(self, run_dir: Path, agg: Path, start_ts: int, history: int, speed: float,
                 settings: dict[str, str]) -> None:
        self.run_dir = run_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self.redis_port, self.paper_port, self.ws_port = free_port(), free_port(), free_port()
        url = f"redis://127.0.0.1:{self.redis_port}/0"
        # Closed like the product: the stack's own users (each process reads its password from EXEC_SECRETS_DIR)
        self.redis_args, passwords = private_stack(run_dir, "exec:")
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("PAPER_", "EXEC_", "REDIS_"))}
        self.env = {
            **inherited, "PYTHONPATH": str(HOME), "REDIS_URL": url, "EXEC_PREFIX": "exec:", "CLOCK": "replay",
            "BINANCE_BASE_URL": f"http://127.0.0.1:{self.paper_port}", "BINANCE_API_KEY": "paper-key",
            "BINANCE_API_SECRET": "paper-secret", "PAPER_API_KEY": "paper-key", "PAPER_API_SECRET": "paper-secret",
            # The market moves only when the replay driver plays a point (lock-step).
            "PAPER_PORT": str(self.paper_port), "PAPER_SPEED": "0", "PAPER_MARKET_CSV": str(agg),
            "PAPER_WS_PORT": str(self.ws_port), "BINANCE_WS_URL": f"ws://127.0.0.1:{self.ws_port}/ws-api/v3",
            "PAPER_START_TS": str(start_ts), "PAPER_HISTORY_BARS": str(history),
            "PAPER_STATE_FN": str(run_dir / "paper" / "paper.json"), "PAPER_CLOCK_REDIS_URL": url, "PAPER_FSYNC": "0",
            "AGG_CSV": str(run_dir / "feed" / "aggregated.csv"), "PAPER_FEED_CSV": str(run_dir / "feed" / "aggregated.csv"),
            "DELTASCOUT_LOG": str(run_dir / "deltascout.log"), "STATE_FN": str(run_dir / "state" / "executor_state.json"),
            "WATCHDOG_PROCESSES": ",".join(s for s in SERVICES if s != "watchdog"),
            "REST_POLL_MS": os.environ.get("REST_POLL_MS", "50"), "REPLAY_LOCKSTEP": "true",
            "EXEC_SECRETS_DIR": str(run_dir / "secrets"),
            "STREAM_MAXLEN": REPLAY_STREAM_MAXLEN, "PYTHONFAULTHANDLER": "1", **settings,
        }
        for sub in ("paper", "feed", "state", "logs", "redis"):
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        (run_dir / "deltascout.log").touch()
        self.r = redis.Redis.from_url(with_user(url, ADMIN, passwords[ADMIN]))  # the driver: the replay's own
        self.admin = f"http://127.0.0.1:{self.paper_port}/admin"
        self.speed = speed

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.run_dir / "logs" / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(argv, cwd=HOME, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                                preexec_fn=die_with_parent)

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise CtlError("replay needs redis-server on PATH (Debian: apt-get install redis-server)")
        self._spawn("redis", [exe, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(self.run_dir / "redis"), *self.redis_args])
        self._until(self._redis_up, 15, "redis-server")
        self._spawn("paper_exchange", [sys.executable, "-m", "services.paper_exchange"])
        self._until(self._paper_up, 30, "paper exchange")
        for s in SERVICES:
            self._spawn(s, [sys.executable, "-m", f"services.{s}"])
        self._until(lambda: all(self.r.exists(f"exec:hb:{s}") for s in SERVICES), 30, "services' heartbeats")

    def _until(self, cond, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            for name, p in self.procs.items():
                if p.poll() is not None:
                    raise CtlError(f"replay: {name} exited with {p.returncode}; see {self.run_dir / 'logs' / name}.log")
            if time.monotonic() > deadline:
                raise CtlError(f"replay: timed out after {timeout}s waiting for {what}; logs in {self.run_dir / 'logs'}")
            time.sleep(0.05)  # polling interval of a start-up condition with a deadline

    def _redis_up(self) -> bool:
        try:
            return bool(self.r.ping())
        except redis.ConnectionError:
            return False

    def _paper_up(self) -> bool:
        try:
            return requests.get(self.admin + "/state", timeout=1).status_code == 200
        except requests.ConnectionError:
            return False

    def paper_state(self) -> dict[str, Any]:
        return requests.get(self.admin + "/state", timeout=10).json()

    def stop(self) -> None:
        for name in [n for n in self.procs if n != "redis"] + (["redis"] if "redis" in self.procs else []):
            p = self.procs.pop(name)
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.r.close()


HISTORY_BARS = 400   # bars of history the feed starts with at most (SWING_MINS 180, TRAIL_SWING_LOOKBACK 240)


class StartPlan(msgspec.Struct):
    """Where the replay starts, how much history the feed gets, and what was changed from the request, with why."""
    start_ts: int
    history: int
    notes: list[str]


def plan_start(bars: list, lines: list[SignalLine], lead_sec: int, start: str | None) -> StartPlan:
    """Start where the user asks (`--start`, else `--lead` seconds before the first timed signal): history is what
    the file holds before it (up to HISTORY_BARS). Only an impossible start is changed, and the note says so."""
    first, last = bars[0].ts, bars[-1].ts
    notes: list[str] = []
    if start:
        try:
            ts = parse_ts(start)
        except (BadRow, ValueError, ArithmeticError) as e:
            raise CtlError(f"--start {start!r}: expected an ISO-8601 time (2025-08-03T12:00:00Z) or epoch seconds") from e
        asked = f"--start {fmt_ts(ts)}"
    else:
        # lines older than the data cannot be traded whatever the start: they do not choose it
        timed = [ln.ts for ln in lines if ln.ts is not None and first <= ln.ts <= last + 60]
        if timed:
            ts = int(timed[0]) - lead_sec
            asked = f"{lead_sec} s (--lead) before the first signal in the data ({fmt_ts(timed[0])})"
        else:
            ts = bars[min(HISTORY_BARS, len(bars) - 1)].ts
            asked = "no signal line has a readable ts"
            notes.append(f"start {fmt_ts(ts)}: {asked}, so the replay starts after {HISTORY_BARS} bars of history")
    if ts > last:
        raise CtlError(f"start {fmt_ts(ts)} ({asked}) is after the last bar of --agg ({fmt_ts(last)})")
    if ts < first:
        notes.append(f"start moved from {fmt_ts(ts)} to {fmt_ts(first)}: {asked} is before the first bar of --agg")
        ts = first
    if ts % 60:
        notes.append(f"start {fmt_ts(ts)} rounded down to the minute (bars are minutes)")
        ts -= ts % 60
    idx = next(i for i, b in enumerate(bars) if b.ts >= ts)
    if bars[idx].ts != ts:
        notes.append(f"start moved from {fmt_ts(ts)} to {fmt_ts(bars[idx].ts)}: no bar at {fmt_ts(ts)} in --agg")
        ts = bars[idx].ts
    history = min(HISTORY_BARS, idx)
    if history < HISTORY_BARS:
        notes.append(f"only {history} bar(s) of history before the start (up to {HISTORY_BARS} are used): the "
                     f"swing stop and trailing look back over what there is")
    early = [ln for ln in lines if ln.ts is not None and ln.ts < ts]
    if early:
        notes.append(f"{len(early)} signal line(s) are older than the start: fed at once, ingest judges them (stale)")
    return StartPlan(ts, history, notes)


def load_agg(agg: str) -> tuple[Path, list]:
    """The --agg file's bars, or a CtlError (exit 2) saying what is wrong with it."""
    p = Path(agg).expanduser().resolve()
    if not p.is_file():
        raise CtlError(f"--agg {agg}: no such file")
    try:
        bars, bad = load_bars(p)
    except BadHeader as e:
        raise CtlError(f"--agg {agg}: not an aggregated.csv v2 file ({e}); the header must be exactly "
                       f"{AGG_HEADER_LINE}") from None
    except UnicodeDecodeError as e:
        raise CtlError(f"--agg {agg}: not a text file ({e})") from None
    except OSError as e:
        raise CtlError(f"--agg {agg}: cannot be read ({e})") from None
    if len(bars) < 2:
        extra = f" ({len(bad)} bad row(s), first: line {bad[0][0]}: {bad[0][1]})" if bad else ""
        raise CtlError(f"--agg {agg}: {len(bars)} bar(s), at least 2 are needed{extra}")
    if any(b2.ts <= b1.ts for b1, b2 in zip(bars, bars[1:])):
        raise CtlError(f"--agg {agg}: bars are not in strictly increasing time order")
    return p, bars


class Options(msgspec.Struct, kw_only=True):
    """What `executorctl replay` was asked."""
    agg: str
    signals: str
    speed: float = 60.0
    run_dir: str | None = None
    start: str | None = None
    lead_sec: int = 300
    timeout: float = 3600.0
    csv_path: str | None = None
    chart_path: str | None = None
    trade_mode: str | None = None        # spot | margin (default: TRADE_MODE of the environment, else spot)
    margin_isolated: bool | None = None
    borrow_mode: str | None = None       # manual | auto
    settings: dict[str, str] = {}        # --set NAME=VALUE and the market options (replay_settings.py)
    every_point: bool = False            # no quiet jumps at max speed (replay_drive.Driver.jump)


def margin_env(o: Options) -> dict[str, str]:
    """The settings the options ask for; the side effect follows the borrow mode (the only allowed pairings)."""
    env: dict[str, str] = {}
    if o.trade_mode is not None:
        env["TRADE_MODE"] = o.trade_mode
    if o.margin_isolated is not None:
        env["MARGIN_ISOLATED"] = "true" if o.margin_isolated else "false"
    if o.borrow_mode is not None:
        env["MARGIN_BORROW_MODE"] = o.borrow_mode
        env["MARGIN_SIDE_EFFECT"] = "NO_SIDE_EFFECT" if o.borrow_mode == "manual" else "AUTO_BORROW_REPAY"
    elif o.trade_mode == "margin" and "MARGIN_BORROW_MODE" not in os.environ:
        env["MARGIN_BORROW_MODE"], env["MARGIN_SIDE_EFFECT"] = "manual", "NO_SIDE_EFFECT"
    return env


def run(out: Out, o: Options) -> int:
    """Replay, report, stop the stack; the exit status (3: timed out)."""
    agg_p, bars = load_agg(o.agg)
    sig_p = Path(o.signals).expanduser().resolve()
    if not sig_p.is_file():
        raise CtlError(f"--signals {o.signals}: no such file")
    lines = read_signals(sig_p)
    plan = plan_start(bars, lines, o.lead_sec, o.start)
    end_ts = bars[-1].ts + 60
    rd = Path(o.run_dir) if o.run_dir else HOME / "var" / "replay" / time.strftime("%Y%m%d-%H%M%S")
    if rd.exists():
        shutil.rmtree(rd)
    stack = ReplayStack(rd, agg_p, plan.start_ts, plan.history, o.speed, {**o.settings, **margin_env(o)})
    try:
        cfg = load_config(process_env("executorctl", stack.env))  # the report reads as the operator
    except (ConfigError, CredentialsError) as e:
        raise CtlError(f"configuration error: {e}") from None
    market = replay_settings.market_of(stack.env)
    say = out.line if not out.as_json else (lambda *_a, **_k: None)
    say(f"replay: {agg_p.name} from {fmt_ts(plan.start_ts)} to {fmt_ts(end_ts)} at {_speed_text(o.speed)}, {len(lines)} "
        f"signal line(s), {cfg.TRADE_MODE}{' isolated' if cfg.MARGIN_ISOLATED else ''}; run dir {rd}")
    say(f"market modelled by the paper exchange: {replay_settings.market_text(market)}")
    if o.settings:
        say("settings: " + " ".join(f"{k}={v}" for k, v in sorted(o.settings.items())))
    for note in plan.notes:
        say(f"note: {note}", "yellow")
    t0 = time.monotonic()
    signal.signal(signal.SIGTERM, _stop_on_term)  # a sweep worker killed: the stack is stopped, not orphaned
    try:
        stack.start()
        say(f"stack up in {time.monotonic() - t0:.1f}s: redis, paper_exchange, " + ", ".join(SERVICES))
        d = drive(out, stack, lines, plan.start_ts, end_ts, o.speed, o.timeout, say, o.every_point)
        say(f"replay {d.outcome}: {d.market_sec / 3600:.2f} h of market in {d.wall_sec:.1f} s wall "
            f"({d.achieved_speed}x achieved, {d.points} points, lock-step)")
        say("memory: peak RSS MiB " + ", ".join(f"{k} {v / 1024:.0f}" for k, v in
                                                sorted(d.resources.get("rss_peak_kb", {}).items()))
            + f"; redis used_memory peak {d.resources.get('redis_used_memory_peak', 0) / 2**20:.1f} MiB")
        if d.lockstep_timeouts:
            d_notes = f"{len(d.lockstep_timeouts)} point(s) moved on after {LOCKSTEP_WAIT_SEC:g} s without every " \
                      f"process (first: {d.lockstep_timeouts[0]}): results may differ from a slower run"
            plan.notes.append(d_notes)
        info = {"outcome": d.outcome, "run_dir": str(rd), "start": plan.start_ts, "end": end_ts,
                "history_bars": plan.history, "notes": plan.notes, "trade_mode": cfg.TRADE_MODE,
                "speed": "max" if o.speed == float("inf") else o.speed, "achieved_speed": d.achieved_speed,
                "wall_sec": d.wall_sec, "points": d.points, "lockstep_timeouts": d.lockstep_timeouts,
                "profile": d.profile, "resources": d.resources, "market": jsonable(market),
                "settings": dict(o.settings),
                "market_reached": int(stack.r.get("exec:clock") or 0) / 1000}
        code = _report(out, cfg, o, agg_p, lines, info, say)
        return code if d.outcome != "timed out" else 3
    finally:
        stack.stop()


def _report(out: Out, cfg, o: Options, agg_p: Path, lines: list[SignalLine], info: dict[str, Any], say) -> int:
    from services.executorctl import chart, report
    ctx = Ctx(cfg, out)
    try:
        pos = ctx.state().position
        if pos is not None:
            say(f"a position is still open at the end of the replay: {pos.trade_key} {pos.side} {pos.status} "
                "(not in the report: only closed trades are)", "yellow")
        info["open_position"] = pos.trade_key if pos is not None else None
        rows = report.build(ctx)
        tot = report.totals(rows)
        tot["dust"] = report.dust_summary(ctx, rows)
        replay_lines.account(ctx, lines, {r.trade_key for r in rows}, info["open_position"])
        info["signal_lines"] = replay_lines.summary(lines)
        if o.csv_path:
            report.write_csv(Path(o.csv_path), rows)
            replay_lines.write_csv(signals_csv_path(Path(o.csv_path)), lines)
        if o.chart_path:
            chart.draw(Path(o.chart_path), rows, agg_p, cfg.SYMBOL)
        if out.as_json:
            out.json({"trades": [jsonable(r) for r in rows], "totals": tot, "signals": replay_lines.as_json(lines),
                      "csv": o.csv_path, "signals_csv": str(signals_csv_path(Path(o.csv_path))) if o.csv_path else None,
                      "chart": o.chart_path, "replay": info})
            return 0
        report.render(ctx, rows, tot)
        out.line(f"market modelled by the paper exchange: {replay_settings.market_text(info['market'])}")
        replay_lines.render(ctx, lines)
        for note in info["notes"]:
            out.line(f"note: {note}", "yellow")
        if o.csv_path:
            out.line(f"CSV: {o.csv_path} (trades), {signals_csv_path(Path(o.csv_path))} (signal lines)")
        if o.chart_path:
            out.line(f"chart: {o.chart_path}")
        return 0
    finally:
        ctx.close()


def _stop_on_term(_sig: int, _frame: Any) -> None:
    signal.signal(signal.SIGTERM, signal.SIG_IGN)   # a second one must not cut the stack's stop short
    raise KeyboardInterrupt("SIGTERM")


def _speed_text(speed: float) -> str:
    return "the fastest speed" if speed == float("inf") else f"{speed:g}x"


def signals_csv_path(trades_csv: Path) -> Path:
    """Where the signal lines' CSV goes: next to the trades' CSV (trades.csv -> trades.signals.csv)."""
    return trades_csv.with_name(trades_csv.stem + ".signals" + (trades_csv.suffix or ".csv"))
