"""The dust ledger on the real processes (issue 22 §4): consecutive spot longs on the paper exchange; each leaves
its leftover (bought - base commission - sold) in the ledger, the trade that plans its legs once the ledger holds a
whole step sells that step with its last leg, and the account never holds less than the ledger says."""
from __future__ import annotations

from decimal import Decimal

from shared.domain.position import encode_state
from tests.stack import Stack
from tests.test_executorctl import ctl_json
from tests.test_exit_manager_support import (  # noqa: F401 - make is a fixture
    STEP,
    make,
    last_price,
    legs_placed,
    open_long,
    price,
    trade_orders,
    wait_closed,
    wait_event,
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


def _carry_decided(s: Stack) -> object:
    """The position once its legs rest and the ledger's carry was decided (after the stops rest, dust_carry.py)."""
    return s.wait(lambda: (p := s.state().position) is not None and p.dust_checked and legs_placed(s) and p, 20,
                  "the carry decided and the legs resting")


def _stopped_trade(s: Stack, closed_before: int) -> tuple[str, object]:
    pos = open_long(s)
    planned = _carry_decided(s)
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


def test_the_stops_rest_before_the_account_is_read_for_the_carry(make):
    """The account read that sizes the carry comes after the legs' stops rest: it never delays protection. The
    paper exchange holds that read (an injected latency on /api/v3/account, taken when the request arrives); while
    the exit manager waits in it, the exchange already has every leg's stop resting. Then the trailing stop grows
    by the ledger's step in one cancelReplace, and the stop-out sells it."""
    carried = STEP * 2
    s = make(PAPER_BALANCES=f"USDC=10000,BTC={carried}")   # the ledger's coins from earlier trades, in the account
    st = s.state()
    st.dust, st.version = carried, st.version + 1
    s.r.set(f"{s.prefix}state", encode_state(st))
    s.admin("/faults", {"latency_ms": 3000, "count": 1, "path": "/api/v3/account"})
    s.append_peak("long", last_price(s))
    s.wait(lambda: not s.admin("/faults")["faults"], 20, "the carry's account read held at the exchange")
    pos = s.state().position
    resting = {o["clientOrderId"] for o in s.open_orders() if o["type"] == "STOP_LOSS_LIMIT"}
    assert len(pos.legs) == 3 and {lg.stop_client_id for lg in pos.legs} <= resting, (pos.legs, resting)
    assert pos.dust_in == 0 and not pos.dust_checked
    ev = wait_event(s, "dust_carried")
    assert Decimal(str(ev.data["qty"])) == carried
    planned = _carry_decided(s)
    trail = next(lg for lg in planned.legs if lg.name == "trail")
    stop = next(o for o in s.open_orders() if o["clientOrderId"] == trail.stop_client_id)
    assert Decimal(stop["origQty"]) == trail.qty and trail.attempt == 1 and planned.dust_in == carried
    assert planned.exit_qty == planned.filled_qty - planned.entry_fee_base + carried
    price(s, planned.sl)
    wait_closed(s)
    lc = s.state().last_closed
    own = planned.exit_qty - carried
    assert lc.qty == own // STEP * STEP + carried, "the carried steps were sold with the trade's own coins"
    assert lc.dust_delta == _leftover(s, lc.trade_key) < 0 and s.state().dust == carried + lc.dust_delta
    assert _free_btc(s) == s.state().dust, "the account holds exactly the product's own leftover"
