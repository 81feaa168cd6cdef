"""TRAIL_SOURCE on the real processes: when the feed gives no swing, the book's mid stands in at the trailing's
activation (both values); with BINANCE also at every later evaluation (the original's maintenance fallback), with
AGG never. The feed here can hold no swing: TRAIL_SWING_LR=100 bars each side in a 150-bar lookback."""
from __future__ import annotations

import pytest

from shared.domain.exit_decide import trail_mid_fallback
from tests.test_exit_manager_support import (  # noqa: F401 - make is a fixture
    make,
    events,
    open_long,
)
from tests.test_exit_manager_trailing import _replay_until


def test_the_mid_stands_in_at_activation_always_later_only_with_binance():
    assert trail_mid_fallback("AGG", activation=True) and trail_mid_fallback("BINANCE", activation=True)
    assert trail_mid_fallback("BINANCE", activation=False) and not trail_mid_fallback("AGG", activation=False)


@pytest.mark.parametrize("source", ["AGG", "BINANCE"])
def test_trail_source_decides_the_mid_fallback_after_activation(make, moment, source):
    s = make(TRAIL_SOURCE=source, TRAIL_SWING_LR="100", TRAIL_SWING_LOOKBACK="150", TRAIL_UPDATE_EVERY_SEC="1")
    pos = open_long(s)

    def later_evals():
        return [e for e in events(s, "trail_eval", pos.trade_key) if not e.data["activation"]]
    _replay_until(s, lambda: len(later_evals()) >= 2 or s.state().position is None,
                  (moment.bars_to_tp2 + moment.bars_after_tp2 + 90) * 2)
    first = [e for e in events(s, "trail_eval", pos.trade_key) if e.data["activation"]]
    assert first and first[0].data["source"] == "mid"          # no swing: the mid at activation, either value
    later = later_evals()
    assert later, "the trailing stop was never evaluated after its activation"
    if source == "BINANCE":
        assert all(e.data["source"] == "mid" and e.data["candidate"] is not None for e in later)
    else:
        assert all(e.data["source"] == "swing" and e.data["candidate"] is None for e in later)
