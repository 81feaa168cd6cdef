"""The narration lives in shared/ (shared.narration): the demo and `executorctl events` print the same line for
an event, and executorctl imports nothing of the demo (a fresh interpreter loads every executorctl module)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from services.executorctl.trail import describe as ctl_describe
from shared.domain.messages import Event
from shared.narration import describe

REPO = Path(__file__).resolve().parents[1]


def test_one_narration_for_the_demo_and_executorctl():
    ev = Event(service="exit_manager", kind="break_even_done", at=1_736_798_400.0, trade_key="tk",
               data={"stop": "95000.50"})
    assert describe(ev) == "[20:00:00] BE       stops at break-even 95000.50"
    assert ctl_describe is describe
    assert describe(Event(service="x", kind="no_such_kind", at=0.0)) is None


def test_executorctl_imports_nothing_of_the_demo():
    mods = sorted(p.stem for p in (REPO / "services" / "executorctl").glob("*.py"))
    code = ("import importlib, sys\n"
            f"for m in {mods!r}:\n"
            "    importlib.import_module('services.executorctl.' + m)\n"
            "bad = [m for m in sys.modules if m.startswith('services.demo')]\n"
            "print('loaded', len(sys.modules)); assert not bad, bad\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and "loaded" in out.stdout, out.stderr
