"""`python -m chaos [--short] [--seed N] ...`: one seeded chaos run; exit 1 on any violation."""
from __future__ import annotations

import argparse
import sys

from chaos.run import Options, main

SHORT = {"duration": 50.0, "speed": 120.0, "mean_gap": 2.5, "settle": 30.0, "random_every_bars": 15.0}


def cli(argv: list[str] | None = None) -> int:
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
    ap.add_argument("--user-stream", action="store_true",
                    help="also run and kill services.user_stream (WebSocket API of the paper exchange)")
    ap.add_argument("--run-dir", default="")
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--verify", metavar="RUN_DIR", help="only recompute the verdict of a finished run from its "
                    "evidence.json (no stack is started)")
    a = ap.parse_args(argv)
    if a.verify:
        from chaos.checks import verify_saved
        v = verify_saved(a.verify)
        for x in v.violations:
            print(f"VIOLATION  {x}")
        for x in v.notes:
            print(f"note       {x}")
        print(f"{len(v.violations)} violations; figures {v.figures}")
        return 1 if v.violations else 0
    base = dict(SHORT) if a.short else {}
    for k in ("duration", "speed", "mean_gap", "settle"):
        v = getattr(a, k)
        if v is not None:
            base[k] = v
    opts = Options(seed=a.seed, window_target=a.window_target, trade_mode=a.trade_mode, user_stream=a.user_stream,
                   run_dir=a.run_dir,
                   quiet=a.quiet, **base)
    print(f"chaos: seed {opts.seed}", flush=True)
    return main(opts)


if __name__ == "__main__":
    sys.exit(cli())
