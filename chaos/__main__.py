"""`python -m chaos [--short] [--seed N] ...`: one seeded chaos run; exit 1 on any violation."""
from __future__ import annotations

import argparse
import sys

from chaos.run import SHORT, Options, main


def parse(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m chaos", description=__doc__)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--short", action="store_true", help="the CI-sized run (about 90 s wall)")
    ap.add_argument("--duration", type=float, help="wall seconds of chaos (default 600, short 50)")
    ap.add_argument("--speed", type=float, help="replay speed, market s per wall s (default 120)")
    ap.add_argument("--mean-gap", type=float, help="mean wall seconds between chaos actions (default 4, short 2.5)")
    ap.add_argument("--settle", type=float, help="wall seconds for trades to close after the chaos (default 90)")
    ap.add_argument("--window-target", type=float, default=15.0,
                    help="max wall seconds between an entry fill and its first stop on the exchange")
    ap.add_argument("--trade-mode", choices=("spot", "margin"), default="spot")
    ap.add_argument("--user-stream", action=argparse.BooleanOptionalAction, default=True,
                    help="run and kill services.user_stream (WebSocket API of the paper exchange), which feeds the "
                         "`orders` stream the engine and the exit manager learn fills from (default: on; "
                         "--no-user-stream: without it, both fall back to REST polling)")
    ap.add_argument("--run-dir", default="")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--verify", metavar="RUN_DIR", help="only recompute the verdict of a finished run from its "
                    "evidence.json (no stack is started)")
    return ap.parse_args(argv)


def options(a: argparse.Namespace) -> Options:
    """The run's options from the parsed command line (`--short` first, explicit knobs over it)."""
    base = dict(SHORT) if a.short else {}
    for k in ("duration", "speed", "mean_gap", "settle"):
        v = getattr(a, k)
        if v is not None:
            base[k] = v
    return Options(seed=a.seed, window_target=a.window_target, trade_mode=a.trade_mode, user_stream=a.user_stream,
                   run_dir=a.run_dir, quiet=a.quiet, **base)


def cli(argv: list[str] | None = None) -> int:
    a = parse(argv)
    if a.verify:
        from chaos.checks import verify_saved
        v = verify_saved(a.verify)
        for x in v.violations:
            print(f"VIOLATION  {x}")
        for x in v.notes:
            print(f"note       {x}")
        print(f"{len(v.violations)} violations; figures {v.figures}")
        return 1 if v.violations else 0
    opts = options(a)
    print(f"chaos: seed {opts.seed}", flush=True)
    return main(opts)


if __name__ == "__main__":
    sys.exit(cli())
