"""A sweep's grid, combinations and ids (pure): values with commas, refused settings, the same arguments the
same sweep, and replay options refused before anything runs."""
from __future__ import annotations

import pytest

from services.executorctl import replay_settings, sweep_plan
from services.executorctl.ctx import CtlError


def test_grid_values_commas_and_colons():
    g = sweep_plan.parse_grid(["SL_PCT=0.002,0.003,0.004", "TP_R_LIST=1,2:1.5,3", "paper_fee_rate=0.001,0.002"])
    assert g == {"SL_PCT": ["0.002", "0.003", "0.004"], "TP_R_LIST": ["1,2", "1.5,3"],
                 "PAPER_FEE_RATE": ["0.001", "0.002"]}
    files = [(("a1", "m.csv"), ("s1", "s.jsonl")), (("a2", "n.csv"), ("s1", "s.jsonl"))]
    combos = sweep_plan.combinations(files, g, {"ENTRY_OFFSET_USD": "0.5"}, ["--speed", "max"])
    assert len(combos) == 2 * 3 * 2 * 2 and len({c.id for c in combos}) == len(combos)
    assert all(c.settings["ENTRY_OFFSET_USD"] == "0.5" for c in combos)
    again = sweep_plan.combinations(files, dict(reversed(list(g.items()))), {"ENTRY_OFFSET_USD": "0.5"},
                                    ["--speed", "max"])
    assert sweep_plan.sweep_id(again) == sweep_plan.sweep_id(combos)   # the same arguments: the same sweep


@pytest.mark.parametrize("item, says", [
    ("SL_PCT", "NAME=v1,v2"), ("SL_PCT=", "NAME=v1,v2"), ("SL_PCT=1,1", "repeated"),
    ("PAPER_PORT=1,2", "private stack"), ("REDIS_URL=a,b", "private stack"),
])
def test_bad_grid_is_a_message(item, says):
    with pytest.raises(CtlError, match=says):
        sweep_plan.parse_grid([item])


def test_settings_are_checked_by_the_processes_own_parsers():
    replay_settings.validate({"SL_PCT": "0.003", "PAPER_FEE_RATE": "0.00075", "PAPER_PARTIAL_FILL_RATIO": "0.5"})
    for bad, name in (({"SL_PCT": "x"}, "SL_PCT"), ({"PAPER_PARTIAL_FILL_RATIO": "2"}, "PAPER_PARTIAL_FILL_RATIO"),
                      ({"PAPER_FEE_RATE": "-1"}, "PAPER_FEE_RATE")):
        with pytest.raises(CtlError, match=name):
            replay_settings.validate(bad)
    assert sweep_plan.time_left([10.0, 20.0], 4, 2) == 30.0 and sweep_plan.time_left([], 3, 1) is None
