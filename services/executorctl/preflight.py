"""`executorctl preflight`: is this account ready to trade, and if not, why (issue 22). Read-only: one line per
check with OK / WARN / FAIL and the fix, or --json; exit 0 ready, 1 not ready."""
from __future__ import annotations

from services.executorctl.ctx import Ctx
from shared.adapters.preflight_probe import render_lines, run_preflight
from shared.domain.preflight import ready


def run(ctx: Ctx) -> int:
    """Run every check against the configured exchange, Redis and files; print them; 0 when ready."""
    checks = run_preflight(ctx.cfg, ctx.r, ctx.client(), ctx.clock.now)
    ok = ready(checks)
    if ctx.out.as_json:
        ctx.out.json({"ready": ok, "checks": checks})
    else:
        for line in render_lines(checks):
            style = "bold red" if line.startswith(("FAIL", "NOT READY")) else \
                "yellow" if line.startswith("WARN") else "green" if line.startswith(("OK", "READY")) else ""
            ctx.out.line(line, style)
    return 0 if ok else 1
