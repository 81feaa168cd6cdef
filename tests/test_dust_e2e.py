"""The dust ledger on the real processes (issue 22 §4): consecutive spot longs on the paper exchange; each leaves
its leftover (bought - base commission - sold) in the ledger, the trade that plans its legs once the ledger holds a
whole step sells that step with its last leg, and the account never holds less than the ledger says."""
from __future__ import annotations

from decimal import Decimal

from tests.stack import Stack
from tests.test_executorctl import ctl_json
from tests.test_exit_manager_support import (  # noqa: F401 - make is a fixture
    STEP,
    make,
    open_long,
    price,
    trade_orders,
    wait_closed,
)


def _free_btc(s: Stack) -> Decimal:
    bal = s.admin("/state")["balances"]["BTC"]
    return Decimal(bal["free"]) + Decimal(bal["locked"])


def _leftover(s: Stack, trade_key: str) -> Decimal:
    """What the exchange's fills of one trade prove it left: bought - base commission - sold."""
    lc = s.state().last_closed
    fills = [o for o in trade_orders(s, trade_key) if Decimal(o["executedQty"]) > 0]
    bought = sum(Decimal(o["executedQty"]) for o in fills if o["side"] == "BUY")
    sold = sum(Decimal(o["executedQty"]) for o in fills if o["side"] == "SELL")
    return bought - lc.entry_fee_base - sold


def _stopped_trade(s: Stack, closed_before: int) -> tuple[str, object]:
    pos = open_long(s)
    planned = s.state().position
    price(s, pos.sl)
    s.wait(lambda: s.state().closed_count > closed_before and s.state().position is None, 30, "position closed")
    return pos.trade_key, planned


def test_dust_adds_up_and_a_later_trade_sells_it(make):
    s = make(COOLDOWN_SEC="0", LOCK_SEC="0")
    ledger = Decimal(0)
    carried_by = None
    for n in range(4):
        key, planned = _stopped_trade(s, n)
        st = s.state()
        own = planned.exit_qty - planned.dust_in   # this trade's own coins (after the base commission)
        # the last leg carried the ledger's whole steps, never more than it held before the trade
        assert planned.dust_in == (ledger // STEP) * STEP, (planned.dust_in, ledger)
        assert sum(lg.qty for lg in planned.legs) <= planned.exit_qty and planned.dust_in <= ledger
        assert st.last_closed.dust_in == planned.dust_in
        # the close books what the exchange's fills prove: the trade's leftover, net of the carried dust sold
        assert st.last_closed.dust_delta == _leftover(s, key) == own - st.last_closed.qty
        ledger = ledger + st.last_closed.dust_delta
        assert st.dust == ledger and 0 <= ledger
        assert _free_btc(s) == ledger, "the account holds exactly the product's own leftover"
        if planned.dust_in > 0:
            carried_by = key
            assert st.last_closed.qty == own // STEP * STEP + planned.dust_in, "the carried step was sold"
            break
    assert carried_by is not None, "the ledger reached a step and no later trade sold it"
    # the report: each trade's ledger change from the exchange's fills, the balance valued at the bid, not a loss
    doc = ctl_json(s, "report")
    rows = {t["trade_key"]: t for t in doc["trades"]}
    assert Decimal(rows[carried_by]["dust_qty"]) < 0, "the trade that sold the carried step shows it leaving"
    assert sum(Decimal(t["dust_qty"]) for t in rows.values()) == ledger
    dust = doc["totals"]["dust"]
    bid = Decimal(s.admin("/state")["bid"])
    assert Decimal(dust["ledger"]) == ledger and Decimal(dust["value"]) == (ledger * bid).quantize(Decimal("0.0001"))
    for t in rows.values():
        assert Decimal(t["net_pnl"]) == (Decimal(t["gross_pnl"]) - Decimal(t["fees_quote"])).quantize(Decimal("0.0001"))
