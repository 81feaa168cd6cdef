"""One chaos run: plan from the seed, start the stack, drive signals and chaos, settle, verify, report."""
from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections import Counter
from decimal import Decimal
from pathlib import Path

import msgspec
import redis

from chaos.checks import Evidence, Verdict, verify
from chaos.clockmap import ClockMap
from chaos.inputs import Inputs
from chaos.plan import Action, choose_window, plan_actions, plan_signals
from chaos.procs import HOME, SERVICES, ChaosStack, free_port
from shared.adapters.binance_rest import BinanceClient
from shared.adapters.market_files import find_market_file, load_bars
from shared.adapters.redis_streams import decode_fields
from shared.config import load_config, symbol_filters
from shared.domain.messages import Reject, Signal
from shared.domain.peak import ParseParams
from shared.domain.position import State, decode_state


def build_env(rd: Path, market: Path, redis_port: int, paper_port: int, **overrides: str) -> dict[str, str]:
    """The environment every process of a chaos (or bench) stack sees; everything under `rd`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PAPER_", "EXEC_"))}
    env.update({
        "PYTHONPATH": str(HOME), "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", "EXEC_PREFIX": "chaos:",
        "CLOCK": "replay", "BINANCE_BASE_URL": f"http://127.0.0.1:{paper_port}", "BINANCE_API_KEY": "paper-key",
        "BINANCE_API_SECRET": "paper-secret", "PAPER_API_KEY": "paper-key", "PAPER_API_SECRET": "paper-secret",
        "PAPER_PORT": str(paper_port), "PAPER_SPEED": "0", "PAPER_MARKET_CSV": str(market),
        "PAPER_HISTORY_BARS": "400", "PAPER_STATE_FN": str(rd / "paper" / "paper.json"),
        "PAPER_CLOCK_REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
        "AGG_CSV": str(rd / "feed" / "aggregated.csv"), "PAPER_FEED_CSV": str(rd / "feed" / "aggregated.csv"),
        "DELTASCOUT_LOG": str(rd / "logs" / "deltascout.log"), "STATE_FN": str(rd / "state" / "executor_state.json"),
        "EXEC_LOG": str(rd / "logs" / "executor.log"),
        "REST_POLL_MS": "100", "HEARTBEAT_TTL_SEC": "5", "BINANCE_TIMEOUT_SEC": "2",
        "COOLDOWN_SEC": "60", "LOCK_SEC": "15", "MAX_PEAK_AGE_SEC": "3600",
        "STREAM_MAXLEN": "1000000", "TRADE_MODE": "spot",
    })
    env.update(overrides)
    for sub in ("paper", "feed", "state", "logs"):
        (rd / sub).mkdir(parents=True, exist_ok=True)
    return env


# `--short`: the CI-sized run (about 90 s wall)
SHORT = {"duration": 50.0, "speed": 120.0, "mean_gap": 2.5, "settle": 30.0, "random_every_bars": 15.0}


class Options(msgspec.Struct, kw_only=True):
    seed: int = 1
    duration: float = 600.0        # wall seconds of chaos
    speed: float = 120.0           # market seconds per wall second (PAPER_SPEED)
    mean_gap: float = 4.0          # mean wall seconds between chaos actions
    settle: float = 90.0           # wall seconds for open trades to close once chaos stops
    window_target: float = 15.0    # max wall seconds a filled quantity may wait for its first stop
    random_every_bars: float = 25.0
    cooldown_sec: int = 60         # COOLDOWN_SEC (market seconds)
    lock_sec: int = 15             # LOCK_SEC (market seconds)
    run_dir: str = ""
    trade_mode: str = "spot"
    user_stream: bool = True       # run (and kill) services.user_stream on the paper exchange's WebSocket API
    quiet: bool = False


def _say(opts: Options, text: str) -> None:
    if not opts.quiet:
        print(text, flush=True)


class Run:
    def __init__(self, opts: Options) -> None:
        self.o = opts
        self.rng = random.Random(opts.seed)
        self.run_dir = Path(opts.run_dir or HOME / "var" / "chaos" / f"seed-{opts.seed}")
        if self.run_dir.exists():
            shutil.rmtree(self.run_dir)
        self.run_dir.mkdir(parents=True)
        self.kills: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.corruptions: Counter[str] = Counter()
        self.crashes: list[str] = []
        self.log_lines: list[str] = []
        self.alert_counts: Counter[str] = Counter()

    # ---- set-up --------------------------------------------------------------------------------
    def prepare(self) -> None:
        o = self.o
        market, self.market_label = find_market_file(HOME.parent / "shared" / "data" / "market",
                                                     HOME / "var" / "market")
        bars, _bad = load_bars(market)
        self.bars = bars
        redis_port, paper_port, ws_port = free_port(), free_port(), free_port()
        rd = self.run_dir
        self.services = SERVICES + (("user_stream",) if o.user_stream else ())
        env = build_env(rd, market, redis_port, paper_port, COOLDOWN_SEC=str(o.cooldown_sec),
                        LOCK_SEC=str(o.lock_sec), TRADE_MODE=o.trade_mode, PAPER_WS_PORT=str(ws_port),
                        BINANCE_WS_URL=f"ws://127.0.0.1:{ws_port}/ws-api/v3",
                        # the heartbeats the watchdog checks: the services this run starts (with --no-user-stream,
                        # a missing user_stream heartbeat is not a finding)
                        WATCHDOG_PROCESSES=",".join(s for s in self.services if s != "watchdog"),
                        **({"MARGIN_BORROW_MODE": "auto"} if o.trade_mode == "margin" else {}))
        self.killable = ("redis", "paper_exchange") + self.services
        for sub in ("paper", "feed", "state", "logs"):
            (rd / sub).mkdir(parents=True, exist_ok=True)
        cfg = load_config(env)
        self.cfg = cfg
        f = symbol_filters(cfg)
        n_bars = int((2 * o.duration + o.settle) * o.speed / 60) + 30
        start, moments = choose_window(bars, cfg, f, self.rng, n_bars)
        self.start_index = start
        env["PAPER_START_TS"] = str(bars[start].ts)
        self.signals = plan_signals(bars, start, moments, int(1.5 * o.duration * o.speed / 60), self.rng,
                                    o.random_every_bars)
        self.actions = plan_actions(self.rng, o.duration, o.mean_gap, self.killable)
        self.env = env
        self.stack = ChaosStack(rd, env, redis_port, paper_port, self.services)
        _say(o, f"chaos seed {o.seed}: {market.name} [{self.market_label}], replay from bar {start} at {o.speed:g}x, "
                f"{len(self.signals)} PEAK lines planned ({sum(p.why == 'tp2_moment' for p in self.signals)} at TP2 "
                f"moments), {len(self.actions)} chaos actions over {o.duration:g} s; run dir {rd}")

    # ---- the run -------------------------------------------------------------------------------
    def _note(self, text: str) -> None:
        line = f"[{time.time() - self.t0:7.2f}s] {text}"
        self.log_lines.append(line)
        _say(self.o, line)

    def _set_speed(self, speed: float) -> None:
        try:
            self.stack.admin("/speed", {"speed": speed}, timeout=5)
        except Exception as e:  # noqa: BLE001 -- the exchange may be down; the caller retries on restart
            self._note(f"could not set speed {speed}: {e}")

    def _restart(self, name: str) -> None:
        self.stack.start(name)
        if not self.stack.wait_up(name, 45):
            self._note(f"{name} not up 45 s after restart")
        if name == "paper_exchange":
            self._set_speed(self.speed_now)

    def _watch_crashes(self) -> None:
        for name in list(self.stack.procs):
            p = self.stack.procs[name]
            if p.poll() is not None:
                self.crashes.append(f"{name} exited by itself with code {p.returncode}")
                self._note(f"UNEXPECTED EXIT {name} rc={p.returncode}; restarting it")
                self._restart(name)

    def _do(self, a: Action) -> None:
        if a.kind == "kill":
            self.stack.kill9(a.target)
            self.kills[a.target] += 1
            time.sleep(a.param.get("down_sec", 0.5))
            self._restart(a.target)
            self._note(f"kill -9 {a.target}, down {a.param.get('down_sec')} s, restarted")
        elif a.kind == "fault":
            try:
                self.stack.admin("/faults", a.param, timeout=5)
                self.faults[a.target] += 1
                self._note(f"fault {a.param}")
            except Exception as e:  # noqa: BLE001
                self._note(f"fault {a.param} not armed: {e}")
        else:
            market = self.clock.market_ms() or 0
            what = self.inputs.corrupt(a.target, a.param.get("n", 1), market // 1000)
            if not what.startswith("skipped"):
                self.corruptions[a.target] += 1
            self._note(f"corrupt {a.target}: {what}")

    def execute(self) -> Verdict:
        o = self.o
        self.t0 = time.time()
        st = self.stack
        st.start_all()
        self._note("stack up: redis (AOF, appendfsync always), paper_exchange, " + ", ".join(self.services))
        self.clock = ClockMap(st.r.__class__(host="127.0.0.1", port=st.redis_port, socket_timeout=1,
                                             socket_connect_timeout=0.5), self.cfg.EXEC_PREFIX, st.admin_url)
        self.clock.start()
        self.inputs = Inputs(Path(self.env["DELTASCOUT_LOG"]), Path(self.env["AGG_CSV"]),
                             ParseParams.from_config(self.cfg), st.r, self.cfg.EXEC_PREFIX, random.Random(o.seed + 1))
        self.speed_now = o.speed
        self._set_speed(o.speed)
        pending = list(self.signals)
        actions = list(self.actions)
        c0 = time.monotonic()
        # every planned action runs, even when restarts made the run late (bounded at 1.5x the duration)
        while (time.monotonic() - c0 < o.duration or actions) and time.monotonic() - c0 < 1.5 * o.duration:
            m = self.clock.market_ms()
            while pending and m is not None and pending[0].at_ts * 1000 <= m:
                p = pending.pop(0)
                w = self.inputs.peak(p)
                self._note(f"PEAK {p.kind} {p.price} ({p.why}) key {w.key}")
            if actions and time.monotonic() - c0 >= actions[0].at:
                self._do(actions.pop(0))
            self._watch_crashes()
            time.sleep(0.05)
        self._note(f"chaos over: {sum(self.kills.values())} kills, {sum(self.faults.values())} faults, "
                   f"{sum(self.corruptions.values())} corruptions; settling (up to {o.settle:g} s)")
        return self.settle_and_verify()

    def _state(self) -> State:
        raw = self.stack.r.get(self.cfg.key("state"))
        return decode_state(raw) if raw else State()

    def _quiet(self) -> bool:
        """Every signal consumed by position_engine and no trade in a transient phase."""
        r = self.stack.r
        try:
            groups = r.xinfo_groups(self.cfg.key("signals"))
        except redis.ResponseError:
            groups = []
        for g in groups:
            if g.get("pending", 0) or (g.get("lag") or 0):
                return False
        st = self._state()
        return st.position is None or st.position.status == "OPEN_FILLED"

    def settle_and_verify(self) -> Verdict:
        st, o = self.stack, self.o
        for name in self.killable:
            if not st.alive(name):
                self._restart(name)
        try:
            st.admin("/faults", {"clear": True}, timeout=5)
        except Exception as e:  # noqa: BLE001
            self._note(f"could not clear faults: {e}")
        deadline = time.monotonic() + o.settle
        while time.monotonic() < deadline:
            self._watch_crashes()
            try:
                if self._state().position is None and self._quiet():
                    break
            except redis.RedisError:
                pass
            time.sleep(0.2)
        self.speed_now = 0
        self._set_speed(0)
        self._note("market paused")
        q_deadline = time.monotonic() + 20
        last_v, since = -1, time.monotonic()
        while time.monotonic() < q_deadline:
            self._watch_crashes()
            try:
                v = self._state().version
                if v != last_v:
                    last_v, since = v, time.monotonic()
                elif time.monotonic() - since > 2 and self._quiet():
                    break
            except redis.RedisError:
                pass
            time.sleep(0.2)
        self.clock.stop()
        self.alert_counts = self.alerts()
        ev = self._evidence()
        (self.run_dir / "evidence.json").write_bytes(msgspec.json.encode(
            {"evidence": ev, "clock": {"walls": self.clock.walls, "markets": self.clock.markets}}))
        verdict = verify(ev, self.clock.wall_after, self.clock.wall_before,
                         self.clock.walls[-1] if self.clock.walls else None)
        if self.crashes:
            verdict.notes.extend(self.crashes)
        return verdict

    def _evidence(self) -> Evidence:
        st = self.stack
        orders = st.orders()
        client = BinanceClient(self.env["BINANCE_BASE_URL"], "paper-key", "paper-secret",
                               margin="cross" if self.o.trade_mode == "margin" else None)
        entry_trades = {}
        exit_trades = {}
        for o in orders:
            if Decimal(o["executedQty"]) > 0:
                got = client.my_trades(self.cfg.SYMBOL, order_id=o["orderId"])
                (entry_trades if "-en-" in o["clientOrderId"] else exit_trades)[o["orderId"]] = got
        client.close()
        events = []
        for eid, fields in st.r.xrange(self.cfg.key("events"), "-", "+"):
            if fields.get(b"type") == b"event":
                events.append((int(eid.split(b"-")[0]), decode_fields(fields)))
        signals = [decode_fields(f) for _i, f in st.r.xrange(self.cfg.key("signals"), "-", "+")]
        rejects = [decode_fields(f) for _i, f in st.r.xrange(self.cfg.key("rejects"), "-", "+")]
        margin = st.admin("/state").get("margin", {}) if self.o.trade_mode == "margin" else {}
        return Evidence(orders=orders, entry_trades=entry_trades, events=events,
                        signals=[s for s in signals if isinstance(s, Signal)],
                        rejects=[r for r in rejects if isinstance(r, Reject)], state=self._state(),
                        written=self.inputs.written, window_target_sec=self.o.window_target,
                        qty_step=self.cfg.QTY_STEP, trade_mode=self.o.trade_mode, margin=margin,
                        exit_trades=exit_trades)

    def alerts(self) -> Counter[str]:
        out: Counter[str] = Counter()
        try:
            for _i, f in self.stack.r.xrange(self.cfg.key("alerts"), "-", "+"):
                a = decode_fields(f)
                out[f"{getattr(a, 'check', '?')}/{getattr(a, 'severity', '?')}"] += 1
        except Exception:  # noqa: BLE001
            pass
        return out


def report(run: Run, v: Verdict) -> dict:
    o = run.o
    f = v.figures
    rows = [
        ("seed", str(o.seed)),
        ("market", f"{run.market_label}, from bar {run.start_index}, {o.speed:g}x"),
        ("chaos duration", f"{o.duration:g} s wall (+ settle up to {o.settle:g} s)"),
        ("PEAK lines written (valid)", str(f["signals_written_valid"])),
        ("lines written (invalid)", str(f["lines_written_invalid"])),
        ("signals published / rejects", f"{f['signals_published']} / {f['rejects']}"),
        ("signal decisions", ", ".join(f"{k} {n}" for k, n in f["signal_decisions"].items()) or "-"),
        ("entries filled", str(f["entries_filled"])),
        ("trades closed", str(f["trades_closed"])),
        ("orders on the exchange", str(f["orders_on_exchange"])),
        ("kills (kill -9 + restart)", ", ".join(f"{k} {n}" for k, n in sorted(run.kills.items())) or "-"),
        ("faults injected", ", ".join(f"{k} {n}" for k, n in sorted(run.faults.items())) or "-"),
        ("inputs corrupted", ", ".join(f"{k} {n}" for k, n in sorted(run.corruptions.items())) or "-"),
        ("corruptions skipped", ", ".join(f"{k} {n}" for k, n in sorted(run.inputs.skipped.items())) or "-"),
        ("unexpected exits", str(len(run.crashes))),
        ("watchdog alerts", ", ".join(f"{k} {n}" for k, n in sorted(run.alert_counts.items())) or "-"),
        ("worst unprotected window", (f"{f['worst_window_sec']:.3f} s wall, upper bound (target {o.window_target:g} s): "
                                      "per trade the longest time any filled quantity had no stop on the exchange"
                                      if f["worst_window_sec"] is not None else "n/a (no filled entry)")),
        ("  fill -> first stop", (f"{f['worst_first_stop_sec']:.3f} s wall, upper bound"
                                  if f.get("worst_first_stop_sec") is not None else "n/a")),
        ("  entry_filled -> leg_placed", (f"{f['worst_event_window_sec']:.3f} s wall (Redis stream ids)"
                                          if f["worst_event_window_sec"] is not None else "n/a")),
        ("worst stop-move window", (f"{f['worst_stop_move_ms']:.1f} ms over {f['stop_moves']} moves (the product's "
                                    "stop_move_window events)" if f["worst_stop_move_ms"] is not None else "n/a")),
        ("margin debt after close", f["margin_debt_after_close"]),
        ("VIOLATIONS", str(len(v.violations))),
    ]
    w = max(len(a) for a, _ in rows)
    print("\n" + "=" * 78)
    print(f"CHAOS RESULT (seed {o.seed})")
    print("-" * 78)
    for a, b in rows:
        print(f"{a:<{w}}  {b}")
    print("-" * 78)
    for x in v.violations:
        print(f"VIOLATION  {x}")
    for x in v.notes[:40]:
        print(f"note       {x}")
    print(f"replay:    python -m chaos {replay_args(o)}  (run dir {run.run_dir})")
    out = {"seed": o.seed, "violations": v.violations, "notes": v.notes, "figures": f, "windows": v.windows,
           "kills": dict(run.kills), "faults": dict(run.faults), "corruptions": dict(run.corruptions),
           "crashes": run.crashes, "alerts": dict(run.alert_counts), "actions_log": run.log_lines}
    (run.run_dir / "report.json").write_text(json.dumps(out, indent=2, default=str))
    print("CHAOS_JSON " + json.dumps({"seed": o.seed, "violations": len(v.violations), "trades": f["trades_closed"],
                                     "entries": f["entries_filled"], "kills": sum(run.kills.values()),
                                     "faults": sum(run.faults.values()), "worst_window_sec": f["worst_window_sec"]}))
    return out


def replay_args(o: Options) -> str:
    """The command-line arguments that plan the same run again (only `--short` sets random_every_bars)."""
    args = ["--short"] if o.random_every_bars == SHORT["random_every_bars"] else []
    args += [f"--seed {o.seed}", f"--duration {o.duration:g}", f"--speed {o.speed:g}", f"--mean-gap {o.mean_gap:g}",
             f"--settle {o.settle:g}"]
    if o.trade_mode != "spot":
        args.append(f"--trade-mode {o.trade_mode}")
    if not o.user_stream:
        args.append("--no-user-stream")
    return " ".join(args)


def main(opts: Options) -> int:
    """0: no violation; 1: violations; 2: the run itself failed (printed)."""
    run = Run(opts)
    try:
        run.prepare()
    except Exception as e:  # noqa: BLE001
        print(f"chaos: could not prepare the run: {e!r}")
        return 2
    try:
        verdict = run.execute()
    except Exception as e:  # noqa: BLE001
        import traceback
        traceback.print_exc()
        print(f"chaos: the run failed before its verdict (seed {opts.seed}): {e!r}; logs in {run.run_dir / 'logs'}")
        return 2
    finally:
        try:
            run.stack.stop_all()
        except Exception:  # noqa: BLE001
            pass
    out = report(run, verdict)
    return 1 if out["violations"] else 0
