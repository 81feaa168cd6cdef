"""MARGIN_AUTO_REPAY_AT_CANCEL (issue 22 section 5): with MARGIN_BORROW_MODE=auto the entry carries Binance's
autoRepayAtCancel TRUE or FALSE, as the original sent on every auto order; the paper exchange honours it, so a
cancelled entry gives its loan back (true) or keeps it for the next trade (false, the original's default)."""
from __future__ import annotations

from decimal import Decimal

import pytest

from tests.test_position_engine_support import make_stack_fixture  # noqa: F401  (fixture make_stack)

AUTO = {"TRADE_MODE": "margin", "MARGIN_ISOLATED": "false", "ENTRY_MODE": "LIMIT_ONLY",
        "MARGIN_BORROW_MODE": "auto", "MARGIN_SIDE_EFFECT": "AUTO_BORROW_REPAY"}


@pytest.mark.parametrize("setting, debt_left", [("true", False), ("false", True)])
def test_a_cancelled_auto_borrow_entry_repays_its_loan_only_when_set(make_stack, setting, debt_left):
    s = make_stack(**AUTO, MARGIN_AUTO_REPAY_AT_CANCEL=setting).up()
    s.signal("short", s.last() + 50)   # a short LIMIT resting above: it borrowed the BTC it sells
    p = s.wait_status("OPEN").position
    borrowed = Decimal(s.margin_wallet()["BTC"]["borrowed"])
    assert borrowed >= p.qty, "the auto-borrow entry did not borrow"
    s.command("cancel_entry")
    s.wait_event("entry_aborted")
    s.wait_status(None)
    left = Decimal(s.margin_wallet()["BTC"]["borrowed"])
    assert (left == borrowed) if debt_left else (left == 0), (setting, borrowed, left)
