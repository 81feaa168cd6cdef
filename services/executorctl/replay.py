"""`executorctl replay`: real history through the real processes on the paper exchange, faster than real time.

A private stack in a run directory: its own redis-server, the paper exchange replaying `--agg` at `--speed`
market seconds per wall second (CLOCK=replay: every process follows the replayed market time), and
signal_ingest, position_engine, exit_manager, watchdog as separate processes. Each line of `--signals`
(DeltaScout JSONL) is appended to DELTASCOUT_LOG when the market reaches its `ts`. It ends when the data ends,
or when every line has been read and no position is left; then the report of the trades, and the stack stops.
(user_stream too: the paper exchange serves the WebSocket API user data stream on its own free port.)
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

from services.executorctl.ctx import CtlError, Ctx, Out, fmt_ts
from shared.adapters.market_files import load_bars
from shared.config import load_config
from shared.domain.bars import BadRow, parse_ts

HOME = Path(__file__).resolve().parents[2]
SERVICES = ("signal_ingest", "position_engine", "exit_manager", "watchdog", "user_stream")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_signals(path: Path) -> list[tuple[float, str]]:
    """(market time, line) of every non-empty line, in time order; a line without a readable `ts` is fed at the
    start (ingest rejects it with its reason, as it would live)."""
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        ts = 0.0
        try:
            doc = msgspec.json.decode(line)
            ts = float(parse_ts(str(doc.get("ts", "")))) if isinstance(doc, dict) else 0.0
        except (msgspec.DecodeError, BadRow, ValueError):
            ts = 0.0
        out.append((ts, line))
    out.sort(key=lambda x: x[0])
    return out


class ReplayStack:
    """The private stack's processes, all children of this command."""

    def __init__(self, run_dir: Path, agg: Path, start_ts: int, history: int, speed: float) -> None:
        self.run_dir = run_dir
        self.procs: dict[str, subprocess.Popen] = {}
        self.redis_port, self.paper_port, self.ws_port = free_port(), free_port(), free_port()
        url = f"redis://127.0.0.1:{self.redis_port}/0"
        inherited = {k: v for k, v in os.environ.items() if not k.startswith(("PAPER_", "EXEC_"))}
        self.env = {
            **inherited, "PYTHONPATH": str(HOME), "REDIS_URL": url, "EXEC_PREFIX": "exec:", "CLOCK": "replay",
            "BINANCE_BASE_URL": f"http://127.0.0.1:{self.paper_port}", "BINANCE_API_KEY": "paper-key",
            "BINANCE_API_SECRET": "paper-secret", "PAPER_API_KEY": "paper-key", "PAPER_API_SECRET": "paper-secret",
            # The market stands still while the processes start; `go()` sets the speed.
            "PAPER_PORT": str(self.paper_port), "PAPER_SPEED": "0", "PAPER_MARKET_CSV": str(agg),
            "PAPER_WS_PORT": str(self.ws_port), "BINANCE_WS_URL": f"ws://127.0.0.1:{self.ws_port}/ws-api/v3",
            "PAPER_START_TS": str(start_ts), "PAPER_HISTORY_BARS": str(history),
            "PAPER_STATE_FN": str(run_dir / "paper" / "paper.json"), "PAPER_CLOCK_REDIS_URL": url, "PAPER_FSYNC": "0",
            "AGG_CSV": str(run_dir / "feed" / "aggregated.csv"), "PAPER_FEED_CSV": str(run_dir / "feed" / "aggregated.csv"),
            "DELTASCOUT_LOG": str(run_dir / "deltascout.log"), "STATE_FN": str(run_dir / "state" / "executor_state.json"),
            "WATCHDOG_PROCESSES": ",".join(s for s in SERVICES if s != "watchdog"),
            "REST_POLL_MS": os.environ.get("REST_POLL_MS", "50"),
        }
        for sub in ("paper", "feed", "state", "logs", "redis"):
            (run_dir / sub).mkdir(parents=True, exist_ok=True)
        (run_dir / "deltascout.log").touch()
        self.r = redis.Redis.from_url(url)
        self.admin = f"http://127.0.0.1:{self.paper_port}/admin"
        self.speed = speed

    def _spawn(self, name: str, argv: list[str]) -> None:
        with open(self.run_dir / "logs" / f"{name}.log", "ab") as log:
            self.procs[name] = subprocess.Popen(argv, cwd=HOME, env=self.env, stdout=log, stderr=subprocess.STDOUT)

    def start(self) -> None:
        exe = shutil.which("redis-server")
        if exe is None:
            raise CtlError("replay needs redis-server on PATH (Debian: apt-get install redis-server)")
        self._spawn("redis", [exe, "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no", "--dir", str(self.run_dir / "redis")])
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

    def go(self) -> None:
        """Start the market at the replay speed."""
        requests.post(self.admin + "/speed", json={"speed": self.speed}, timeout=10).raise_for_status()

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


def _start_ts(bars, signals: list[tuple[float, str]], history: int, lead_sec: int, start: str | None) -> int:
    first = bars[0].ts
    earliest = bars[min(history, len(bars) - 1)].ts
    if start:
        ts = parse_ts(start)
    else:
        timed = [t for t, _ in signals if t > 0]
        ts = int(timed[0]) - lead_sec if timed else earliest
    ts = max(ts, earliest, first)
    return ts - ts % 60


def _idle(r: redis.Redis, fed: int) -> bool:
    """Every fed line has been read (a signal or a reject), the engine has taken every signal, no position."""
    if r.xlen("exec:signals") + r.xlen("exec:rejects") < fed:
        return False
    try:
        groups = {(g["name"].decode() if isinstance(g["name"], bytes) else g["name"]): g
                  for g in r.xinfo_groups("exec:signals")}
    except redis.ResponseError:
        groups = {}
    g = groups.get("position_engine")
    if r.xlen("exec:signals") and (g is None or g.get("pending") or g.get("lag")):
        return False
    raw = r.get("exec:state")
    if raw is None:
        return True
    return msgspec.json.decode(raw).get("position") is None


def run(out: Out, agg: str, signals_file: str, speed: float, run_dir: str | None, start: str | None,
        lead_sec: int, timeout: float, csv_path: str | None, chart_path: str | None) -> int:
    agg_p, sig_p = Path(agg).resolve(), Path(signals_file).resolve()
    if not agg_p.is_file():
        raise CtlError(f"--agg {agg}: no such file")
    if not sig_p.is_file():
        raise CtlError(f"--signals {signals_file}: no such file")
    if speed <= 0:
        raise CtlError("--speed must be > 0 (market seconds per wall second)")
    bars, _bad = load_bars(agg_p)
    if len(bars) < 2:
        raise CtlError(f"--agg {agg}: fewer than 2 bars")
    lines = read_signals(sig_p)
    history = min(400, max(0, len(bars) - 2))
    start_ts = _start_ts(bars, lines, history, lead_sec, start)
    end_ts = bars[-1].ts + 60
    rd = Path(run_dir) if run_dir else HOME / "var" / "replay" / time.strftime("%Y%m%d-%H%M%S")
    if rd.exists():
        shutil.rmtree(rd)
    stack = ReplayStack(rd, agg_p, start_ts, history, speed)
    say = out.line if not out.as_json else (lambda *_a, **_k: None)
    say(f"replay: {agg_p.name} from {fmt_ts(start_ts)} to {fmt_ts(end_ts)} at {speed:g}x, {len(lines)} signal "
        f"line(s); run dir {rd}")
    t0 = time.monotonic()
    try:
        stack.start()
        say(f"stack up in {time.monotonic() - t0:.1f}s: redis, paper_exchange, " + ", ".join(SERVICES))
        outcome = _drive(out, stack, lines, start_ts, end_ts, timeout, say)
        say(f"replay {outcome} after {time.monotonic() - t0:.1f}s wall")
        cfg = load_config(stack.env)
        ctx = Ctx(cfg, out)
        try:
            from services.executorctl import report
            pos = ctx.state().position
            if pos is not None:
                say(f"a position is still open at the end of the replay: {pos.trade_key} {pos.side} {pos.status} "
                    "(not in the report: only closed trades are)", "yellow")
            info = {"replay": {"outcome": outcome, "run_dir": str(rd), "start": start_ts, "end": end_ts,
                               "market_reached": int(stack.r.get("exec:clock") or 0) / 1000,
                               "open_position": pos.trade_key if pos is not None else None}}
            code = report.run(ctx, None, csv_path, chart_path, str(agg_p), extra=info)
        finally:
            ctx.close()
        return code if outcome != "timed out" else 3
    finally:
        stack.stop()


def _drive(out: Out, stack: ReplayStack, lines: list[tuple[float, str]], start_ts: int, end_ts: int,
           timeout: float, say) -> str:
    log = Path(stack.env["DELTASCOUT_LOG"])
    fed = 0
    closed_seen = 0
    deadline = time.monotonic() + timeout
    progress = None
    if out.rich:
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        progress = Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[info]}"),
                            TimeElapsedColumn(), console=out.console, transient=False)
        task = progress.add_task("market", total=max(1, end_ts - start_ts), info="")
        progress.start()
    stack.go()
    try:
        while True:
            raw = stack.r.get("exec:clock")
            now = int(raw) / 1000 if raw else float(start_ts)
            while fed < len(lines) and lines[fed][0] <= now:
                with open(log, "a", encoding="utf-8") as fh:
                    fh.write(lines[fed][1].rstrip("\n") + "\n")
                fed += 1
                if progress is None:
                    say(f"[{fmt_ts(now)}] signal {fed}/{len(lines)} fed")
            closed = int(msgspec.json.decode(stack.r.get("exec:state") or b"{}").get("closed_count", 0))
            if closed > closed_seen:
                closed_seen = closed
                if progress is None:
                    say(f"[{fmt_ts(now)}] {closed} trade(s) closed")
            if progress is not None:
                progress.update(task, completed=max(0, now - start_ts),
                                info=f"{fmt_ts(now)}  signals {fed}/{len(lines)}  closed {closed_seen}")
            if fed == len(lines) and _idle(stack.r, fed):
                return "finished: every signal handled, no position left"
            if stack.paper_state().get("replay", {}).get("done"):
                if fed < len(lines):
                    say(f"{len(lines) - fed} signal line(s) later than the market data were not fed")
                return "finished: end of the market data"
            if time.monotonic() > deadline:
                return "timed out"
            for name, p in stack.procs.items():
                if p.poll() is not None:
                    raise CtlError(f"replay: {name} exited with {p.returncode}; see {stack.run_dir / 'logs' / name}.log")
            time.sleep(0.05)  # the replay loop's polling interval (market time moves on its own)
    finally:
        if progress is not None:
            progress.stop()
