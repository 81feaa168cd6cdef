"""Fees paid in BNB (issue 22 §4) on the real processes: with the paper exchange's BNB burn on
(PAPER_BNB_BURN=true, the flag it serves on GET /sapi/v1/bnbBurn) and BNB in the account, every commission is
taken in BNB, so a spot long holds its whole fill: its legs sell every coin, no base dust is left, the dust ledger
stays empty, and the report and preflight both say which fee case applies."""
from __future__ import annotations

from decimal import Decimal

from services.paper_exchange.ledger import BNB_FEE_PAYS
from tests.test_executorctl import ctl_json
from tests.test_exit_manager_support import (  # noqa: F401 - make is a fixture
    make,
    assert_closed,
    open_long,
    price,
    trade_orders,
    wait_closed,
)

BNB_PRICE = Decimal(600)


def test_fees_paid_in_bnb_leave_no_base_dust_and_the_report_and_preflight_say_so(make):
    s = make(PAPER_BNB_BURN="true", PAPER_BALANCES="USDC=10000,BNB=1", PAPER_BNB_PRICE=str(BNB_PRICE))
    pos = open_long(s)
    assert pos.entry_fee_base == 0, "no commission taken in BTC: the position holds its whole fill"
    assert sum(lg.qty for lg in pos.legs) == pos.filled_qty, "the legs cover every coin bought"
    price(s, pos.sl)
    wait_closed(s)
    assert_closed(s, pos.trade_key, "stop")
    st = s.state()
    assert st.dust == 0 and st.last_closed.dust_delta == 0 and st.last_closed.qty == pos.filled_qty
    bal = s.admin("/state")["balances"]
    assert Decimal(bal["BTC"]["free"]) + Decimal(bal["BTC"]["locked"]) == 0, "no base dust left in the account"
    fills = [f for o in trade_orders(s, pos.trade_key) for f in o["fills"]]
    assert fills and {f["commissionAsset"] for f in fills} == {"BNB"}, fills
    fee_bnb = sum(Decimal(f["commission"]) for f in fills)
    # each fill's quote value at the 0.1 % rate, 25 % off for paying in BNB, converted at PAPER_BNB_PRICE
    want = sum((Decimal(f["price"]) * Decimal(f["qty"]) * Decimal("0.001") * BNB_FEE_PAYS / BNB_PRICE)
               .quantize(Decimal("0.00000001")) for f in fills)
    assert fee_bnb == want and Decimal(bal["BNB"]["free"]) == 1 - fee_bnb
    doc = ctl_json(s, "report")
    dust = doc["totals"]["dust"]
    assert dust["base_commission"] is False and "fees paid in BNB" in dust["fee_case"], dust
    assert Decimal(dust["ledger"]) == 0 and Decimal(dust["fees_other"]["BNB"]) == fee_bnb
    [row] = doc["trades"]
    assert Decimal(row["dust_qty"]) == 0 and Decimal(row["fees_other"]["BNB"]) == fee_bnb
    pf = ctl_json(s, "preflight", ok_codes=(0, 1))   # the stack here has no watchdog / notifier: their FAILs
    checks = {c["name"]: c for c in pf["checks"]}
    assert checks["account.fees"]["verdict"] == "OK" and "fees paid in BNB" in checks["account.fees"]["detail"]
    assert "dust left 0" in checks["plan"]["detail"] and "no commission taken in BTC" in checks["plan"]["detail"]
