"""executorctl: the operator's command for a running Executor stack.

Settings come from the same environment as the services (REDIS_URL, EXEC_PREFIX, BINANCE_*, SYMBOL, ...); Redis
is used as the `operator` ACL user (password from EXEC_SECRETS_DIR, or the credentials in REDIS_URL).

    executorctl status [--json]                     processes, halt, position, orders, streams, alerts
    executorctl preflight [--json]                  is the account ready to trade (exit 0) or not (1), and why
    executorctl events [--follow] [--trade KEY]     the audit trail, readable
    executorctl signals|rejects [--follow]          validated signals / refused lines
    executorctl halt|resume|cancel-entry|flatten    operator commands, acknowledged by their owner
    executorctl emergency [--keep-position]         halt, cancel the entry, flatten (or verify stops), report
    executorctl report [--since DATE] [--csv F] [--chart F.png]
    executorctl replay --agg FILE --signals FILE --speed N [--start T] [--trade-mode margin ...] [--set K=V]
    executorctl sweep --redis URL --agg FILE --signals FILE --grid SL_PCT=0.002,0.003 [--grid ...]
    executorctl sweep-worker --redis URL [--dir D]   runs the sweep's replays (as many as you start)

Exit status: 0 done / healthy, 1 unhealthy or a step failed, 2 usage or configuration error, 3 not
acknowledged in time.
"""
from __future__ import annotations

import argparse
import os
import sys

import redis

from services.executorctl.ctx import CtlError, Ctx, Out
from shared.adapters.credentials import CredentialsError, process_env
from shared.config import ConfigError, load_config


def _speed(text: str) -> float:
    """--speed: a number > 0, or max (float inf: no pacing)."""
    if text.strip().lower() in ("max", "fastest"):
        return float("inf")
    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0 < v < float("inf"):
        raise argparse.ArgumentTypeError(f"{text!r}: a number > 0 (market seconds per wall second) or max")
    return v


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="executorctl", description="Operate an Executor stack (settings from the "
                                "environment, like the services).")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--plain", action="store_true", help="no colour or tables (also when not a terminal)")
    common.add_argument("--json", action="store_true", help="machine-readable JSON on stdout")
    sub = p.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    sub.add_parser("status", parents=[common], help="one screen: processes, halt, position, orders, streams, alerts")
    sub.add_parser("preflight", parents=[common], help="read-only checks before trading: key, account, symbol, "
                   "stack, plan, loss limits (exit 0 ready, 1 not)")
    _add_stream_cmds(sub, common)
    _add_control_cmds(sub, common)
    _add_emergency_cmd(sub, common)
    _add_report_cmd(sub, common)
    _add_replay_cmd(sub, common)
    _add_sweep_cmds(sub, common)
    return p


def _add_stream_cmds(sub, common: argparse.ArgumentParser) -> None:
    """events, signals, rejects: the streams' past entries, or followed."""
    for name, what in (("events", "the audit trail"), ("signals", "validated PEAK signals"),
                       ("rejects", "lines that were not signals, with the reason")):
        sp = sub.add_parser(name, parents=[common], help=what)
        sp.add_argument("--follow", "-f", action="store_true", help="keep printing new entries (Ctrl-C stops)")
        sp.add_argument("--last", "-n", type=int, default=50, help="how many past entries (default 50)")
        if name == "events":
            sp.add_argument("--trade", help="only this trade key")
            sp.add_argument("--kind", action="append", help="only events of this kind (repeatable)")


def _add_control_cmds(sub, common: argparse.ArgumentParser) -> None:
    """halt, resume, cancel-entry, flatten: commands acknowledged by the services."""
    for name, what in (("halt", "no new entries (exits keep protecting)"), ("resume", "allow new entries again"),
                       ("cancel-entry", "cancel the pending entry (no Plan B)"),
                       ("flatten", "close the position at market (through the exit manager)")):
        sp = sub.add_parser(name, parents=[common], help=what)
        sp.add_argument("--reason", default="", help="why (recorded in the audit trail)")
        sp.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the acknowledgement")
        if name == "flatten":
            sp.add_argument("--no-wait", action="store_true", help="do not wait for the position to close")


def _add_emergency_cmd(sub, common: argparse.ArgumentParser) -> None:
    """emergency: halt, cancel the entry, flatten (or keep and verify)."""
    sp = sub.add_parser("emergency", parents=[common], help="halt, cancel the entry, flatten (or keep and verify)")
    sp.add_argument("--keep-position", action="store_true",
                    help="keep the position; verify each live leg's stop rests on the exchange")
    sp.add_argument("--last-resort", action="store_true",
                    help="if the exit manager is dead, sell at market with its deterministic flatten id "
                         "(never twice: the id is checked first and adopted by the exit manager)")
    sp.add_argument("--reason", default="emergency", help="why (recorded in the audit trail)")
    sp.add_argument("--timeout", type=float, default=30.0, help="seconds to wait at each step")


def _add_report_cmd(sub, common: argparse.ArgumentParser) -> None:
    """report: closed trades, CSV, chart."""
    sp = sub.add_parser("report", parents=[common], help="closed trades: exits, fees, PnL, totals; CSV, chart")
    sp.add_argument("--since", help="only trades closed since (2025-01-13, ISO time or epoch s, UTC)")
    sp.add_argument("--csv", help="also write the trades to this CSV file")
    sp.add_argument("--chart", help="draw price and trades to this PNG file")
    sp.add_argument("--agg", help="price data for the chart (default AGG_CSV)")


def _add_replay_cmd(sub, common: argparse.ArgumentParser) -> None:
    """replay: history through the real processes."""
    sp = sub.add_parser("replay", parents=[common], help="history through the real processes, faster than real time")
    sp.add_argument("--agg", required=True, help="market data (aggregated.csv v2) to replay")
    sp.add_argument("--signals", required=True, help="DeltaScout JSONL lines, fed at their ts")
    sp.add_argument("--speed", type=_speed, default=60.0,
                    help="market seconds per wall second, at most (default 60), or max: as fast as the processes "
                         "go; lock-step either way, so the trades do not depend on it")
    sp.add_argument("--every-point", action="store_true",
                    help="at max speed too, play every price point singly (no quiet jumps): slower, the same "
                         "trades; a check of the jumps")
    sp.add_argument("--start", help="market start (default: a few minutes before the first signal)")
    sp.add_argument("--lead", type=int, default=300, help="seconds of market before the first signal (default 300)")
    sp.add_argument("--dir", help="run directory (default var/replay/<time>)")
    sp.add_argument("--timeout", type=float, default=3600.0, help="wall seconds before giving up")
    sp.add_argument("--csv", help="write the report's CSV here")
    sp.add_argument("--chart", help="draw the report's chart here")
    sp.add_argument("--trade-mode", choices=("spot", "margin"),
                    help="spot (longs only) or margin (longs and shorts); default TRADE_MODE, else spot")
    sp.add_argument("--margin-isolated", action=argparse.BooleanOptionalAction, default=None,
                    help="margin: the symbol's isolated wallet instead of cross (default MARGIN_ISOLATED)")
    sp.add_argument("--borrow-mode", choices=("manual", "auto"),
                    help="margin: borrow before the entry (manual, NO_SIDE_EFFECT) or with the order "
                         "(auto, AUTO_BORROW_REPAY); default MARGIN_BORROW_MODE, else manual")
    add_settings_options(sp)


def _add_sweep_cmds(sub, common: argparse.ArgumentParser) -> None:
    """sweep and sweep-worker: replays over a grid of settings, as rq jobs."""
    sp = sub.add_parser("sweep", parents=[common], help="replays over a grid of settings, as rq jobs (sweep-worker)")
    sp.add_argument("--redis", required=True, metavar="URL", help="the Redis holding the queue and the results")
    sp.add_argument("--agg", action="append", required=True, help="market data; repeat for several files")
    sp.add_argument("--signals", action="append", required=True, help="signal lines; repeat for several files")
    sp.add_argument("--grid", action="append", default=[], metavar="NAME=v1,v2",
                    help="a setting and its values (a,b:c,d when values hold commas, e.g. TP_R_LIST=1,2:1.5,3); "
                         "repeatable; market settings (PAPER_FEE_RATE...) too")
    sp.add_argument("--x", help="heatmap's x setting (default the first --grid)")
    sp.add_argument("--y", help="heatmap's y setting (default the second --grid)")
    sp.add_argument("--out", default="var/sweep", help="where the CSV and the heatmap go (default var/sweep)")
    sp.add_argument("--speed", default="max", help="each replay's --speed (default max)")
    sp.add_argument("--start", help="each replay's --start")
    sp.add_argument("--lead", type=int, help="each replay's --lead")
    sp.add_argument("--trade-mode", choices=("spot", "margin"))
    sp.add_argument("--borrow-mode", choices=("manual", "auto"))
    sp.add_argument("--replay-timeout", type=float, default=3600.0, help="each replay's --timeout (s)")
    sp.add_argument("--no-wait", action="store_true", help="enqueue and return (run again to follow and gather)")
    sp.add_argument("--timeout", type=float, default=24 * 3600.0, help="wall seconds to follow before giving up")
    add_settings_options(sp)
    sp = sub.add_parser("sweep-worker", parents=[common], help="run sweep combinations from the queue")
    sp.add_argument("--redis", required=True, metavar="URL", help="the Redis the sweep was enqueued on")
    sp.add_argument("--dir", default="var/sweep-worker", help="this worker's files and run directories")
    sp.add_argument("--burst", action="store_true", help="stop when the queue is empty")


MARKET_OPTIONS = (("--fee-rate", "PAPER_FEE_RATE", "commission per fill, e.g. 0.001 (default 0.001)"),
                  ("--slippage-bps", "PAPER_SLIPPAGE_BPS", "market orders' slippage in basis points (default 1)"),
                  ("--spread-ticks", "PAPER_SPREAD_TICKS", "half-spread in ticks around the price (default 1)"),
                  ("--partial-fill-ratio", "PAPER_PARTIAL_FILL_RATIO",
                   "share of a crossing limit order filled per point, (0, 1] (default 1: whole)"),
                  ("--basis-bps", "PAPER_BASIS_BPS", "SYMBOL's premium over the market file's symbol (default 0)"),
                  ("--balances", "PAPER_BALANCES", "starting balances, e.g. USDC=10000,BTC=0"))


def add_settings_options(sp: argparse.ArgumentParser) -> None:
    """The market the paper exchange models and any product setting (replay and sweep)."""
    g = sp.add_argument_group("market modelled by the paper exchange (README: what replay figures mean)")
    for flag, name, what in MARKET_OPTIONS:
        g.add_argument(flag, dest=name, metavar="V", help=f"{name}: {what}")
    sp.add_argument("--set", action="append", metavar="NAME=VALUE", default=[],
                    help="a product setting for this run (e.g. SL_PCT=0.003, TP_R_LIST=1,2), repeatable")


def settings_of(args: argparse.Namespace) -> dict[str, str]:
    """--set items and the market options as settings (validated by replay_settings)."""
    from services.executorctl import replay_settings
    out = replay_settings.parse_set(args.set)
    out.update({name: str(getattr(args, name)) for _f, name, _w in MARKET_OPTIONS if getattr(args, name) is not None})
    return out


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out = Out(plain=args.plain, as_json=args.json)
    try:
        if args.cmd == "replay":
            from services.executorctl import replay
            return replay.run(out, replay.Options(
                agg=args.agg, signals=args.signals, speed=args.speed, run_dir=args.dir, start=args.start,
                lead_sec=args.lead, timeout=args.timeout, csv_path=args.csv, chart_path=args.chart,
                trade_mode=args.trade_mode, margin_isolated=args.margin_isolated, borrow_mode=args.borrow_mode,
                settings=settings_of(args), every_point=args.every_point))
        if args.cmd in ("sweep", "sweep-worker"):
            return _sweep(out, args)
        try:
            # Redis as the `operator` user (its password from EXEC_SECRETS_DIR unless REDIS_URL carries one)
            cfg = load_config(process_env("executorctl", os.environ))
        except (ConfigError, CredentialsError) as e:
            raise CtlError(f"configuration error: {e}") from None
        ctx = Ctx(cfg, out)
        try:
            return _dispatch(ctx, args)
        finally:
            ctx.close()
    except CtlError as e:
        print(f"executorctl: {e}", file=sys.stderr)
        return e.code
    except redis.ConnectionError as e:
        print(f"executorctl: Redis unreachable at the configured REDIS_URL: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _sweep(out: Out, args: argparse.Namespace) -> int:
    if args.cmd == "sweep-worker":
        from services.executorctl import sweep_worker
        return sweep_worker.run_worker(args.redis, args.dir, args.burst)
    from services.executorctl import sweep, sweep_plan
    _speed(args.speed)  # refused here, not by every job
    return sweep.run(out, sweep.Options(
        redis_url=args.redis, aggs=args.agg, signals=args.signals, grid=sweep_plan.parse_grid(args.grid),
        fixed=settings_of(args), replay_options=sweep.load_replay_options(args), out_dir=args.out, x=args.x,
        y=args.y, wait=not args.no_wait, timeout=args.timeout))


def _dispatch(ctx: Ctx, args: argparse.Namespace) -> int:
    if args.cmd == "status":
        from services.executorctl import status
        return status.run(ctx)
    if args.cmd == "preflight":
        from services.executorctl import preflight
        return preflight.run(ctx)
    if args.cmd in ("events", "signals", "rejects"):
        from services.executorctl import trail
        return trail.show(ctx, args.cmd, follow=args.follow, trade=getattr(args, "trade", None),
                          kinds=set(args.kind) if getattr(args, "kind", None) else None, last=args.last)
    if args.cmd in ("halt", "resume", "cancel-entry", "flatten"):
        from services.executorctl import commands
        return commands.run_simple(ctx, args.cmd.replace("-", "_"), args.reason, args.timeout,
                                   wait_close=not getattr(args, "no_wait", False))
    if args.cmd == "emergency":
        from services.executorctl import commands
        return commands.emergency(ctx, args.keep_position, args.reason, args.timeout, args.last_resort)
    if args.cmd == "report":
        from services.executorctl import report
        return report.run(ctx, args.since, args.csv, args.chart, args.agg)
    raise CtlError(f"unknown command {args.cmd}")


if __name__ == "__main__":
    sys.exit(main())
