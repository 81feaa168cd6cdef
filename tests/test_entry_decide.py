"""The entry side's pure decisions (shared/domain/entry_decide.py): table tests, no Redis, no HTTP. The same paths
on the real processes: tests/test_position_engine_entry.py, test_position_engine_crash.py, test_position_engine_commands.py."""
from __future__ import annotations

from decimal import Decimal as D

import msgspec
import pytest

from shared.domain.entry_decide import (
    AbortEntry,
    CancelEntry,
    NeedPrice,
    PlanB,
    ResendEntry,
    WaitEntry,
    entry_cancel_due,
    entry_ended_unfilled,
    entry_missing,
    planb_or_abort,
)
from shared.domain.position import Phase
from tests.test_entry_rules import _pos

CREATED = 2000.0
TIMEOUT = 90.0


def _p(**kw):
    return msgspec.structs.replace(_pos(**{k: kw.pop(k) for k in ("mode",) if k in kw}), created_at=CREATED, **kw)


@pytest.mark.parametrize("case, pos, now, want", [
    ("pending: nothing on the exchange to cancel", _p(status=Phase.PENDING), CREATED + 999, None),
    ("open, inside the timeout", _p(status=Phase.OPEN), CREATED + TIMEOUT - 1, None),
    ("open, timeout reached", _p(status=Phase.OPEN), CREATED + TIMEOUT, CancelEntry("timeout")),
    ("the operator's cancel comes first", _p(status=Phase.OPEN, entry_cancel_requested=True), CREATED,
     CancelEntry("operator")),
    ("a market entry is never timed out", _p(status=Phase.OPEN, mode="MARKET_ONLY"), CREATED + 999, None),
    ("Plan B's market order is never timed out", _p(status=Phase.OPEN, entry_attempt=1), CREATED + 999, None),
    ("filled: the exit side's", _p(status=Phase.OPEN_FILLED), CREATED + 999, None),
])
def test_entry_cancel_due(case, pos, now, want):
    assert entry_cancel_due(pos, now, TIMEOUT) == want, case


@pytest.mark.parametrize("case, pos, wall, want", [
    ("inside the grace: not proof of absence", _p(status=Phase.PENDING, entry_sent_at=100.0), 102.9, WaitEntry()),
    ("pending, past the grace: send it", _p(status=Phase.PENDING, entry_sent_at=100.0), 103.0, ResendEntry()),
    ("pending, operator cancelled: never sent", _p(status=Phase.PENDING, entry_sent_at=100.0,
                                                   entry_cancel_requested=True), 103.0,
     AbortEntry("cancelled by operator before the order reached the exchange")),
    ("acknowledged, then gone: abort with an alert", _p(status=Phase.OPEN, entry_sent_at=100.0), 200.0,
     AbortEntry("entry order not found on the exchange", alert=True)),
])
def test_entry_missing(case, pos, wall, want):
    assert entry_missing(pos, wall, 3.0) == want, case


def test_an_unfilled_limit_entry_asks_for_the_price_then_goes_to_plan_b_or_ends():
    p = _p(status=Phase.OPEN)
    assert entry_ended_unfilled(p, "CANCELED", remaining_tradable=True) == NeedPrice()
    assert planb_or_abort(p, "CANCELED", None) == PlanB(p.qty)
    assert planb_or_abort(p, "CANCELED", "planb_past_tp1 (...)") == AbortEntry("entry canceled with nothing filled")


@pytest.mark.parametrize("case, pos, tradable, want", [
    ("LIMIT mode has no Plan B", _p(status=Phase.OPEN, mode="LIMIT_ONLY"), True,
     AbortEntry("entry expired with nothing filled")),
    ("the rest is under the minimum", _p(status=Phase.OPEN), False, AbortEntry("entry expired with nothing filled")),
    ("Plan B itself ended", _p(status=Phase.OPEN, entry_attempt=1), True, AbortEntry("entry expired with nothing filled")),
    ("the operator cancelled: no Plan B, said so", _p(status=Phase.OPEN, entry_cancel_requested=True), True,
     AbortEntry("entry expired with nothing filled (cancelled by operator)")),
])
def test_an_ended_entry_without_plan_b(case, pos, tradable, want):
    assert entry_ended_unfilled(pos, "EXPIRED", tradable) == want, case


def test_plan_b_buys_only_what_the_limit_did_not_fill_and_an_abort_says_what_filled():
    p = _p(status=Phase.OPEN, filled_qty=D("0.0004"))
    assert planb_or_abort(p, "CANCELED", None) == PlanB(p.qty - D("0.0004"))
    assert planb_or_abort(p, "CANCELED", "planb_price_moved").reason == "entry canceled with 0.0004 filled"
