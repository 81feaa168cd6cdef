"""Conformance: Binance's official `binance-sdk-margin-trading` (/sapi) against the paper exchange process.

The process is shared by the whole session, so margin assertions are about deltas, not absolute balances.
"""
from __future__ import annotations

import pytest
from binance_common.errors import BadRequestError

from tests.conformance_helpers import (  # noqa: F401  (pytest fixtures)
    SYMBOL, D, _clean_book, exchange, margin, sdk_data, sdk_error, val,
)

# Where Binance's documentation and the official SDK's models disagree, the paper exchange follows the
# documented JSON and the SDK's strict parse fails on that field alone:
#  * marginBuyBorrowAmount: documented as a JSON number (`5`); the SDK model says integer, so a fractional
#    borrow (the usual case) cannot be modelled by the SDK at all (it hands back the raw JSON).
BORROW_AMOUNT = frozenset({"marginBuyBorrowAmount"})
#  * DELETE /sapi/v1/margin/order: the SDK model (from Binance's docs example `"orderId": "28"`) declares
#    orderId a string; the paper exchange answers a number like every other order reply, because our own
#    client (shared/adapters/binance_rest.py) decodes it strictly as an int. Reported, not changed here.
CANCEL_ORDER_ID = frozenset({"orderId"})

Q = D("0.001")


def _cross(margin) -> dict:
    acct = sdk_data(margin.query_cross_margin_account_details())
    return {a.asset: a for a in acct.user_assets}


def test_cross_borrow_account_and_repay(margin):
    mx = sdk_data(margin.query_max_borrow(asset="USDC"))
    assert D(mx.amount) > 0 and D(mx.borrow_limit) > 0
    before = _cross(margin)
    tran = sdk_data(margin.margin_account_borrow_repay(asset="USDC", is_isolated="FALSE", amount="1000",
                                                        type="BORROW"))
    assert isinstance(tran.tran_id, int) and tran.tran_id > 0
    acct = sdk_data(margin.query_cross_margin_account_details())
    assert acct.borrow_enabled is True and acct.trade_enabled is True and acct.account_type == "MARGIN_1"
    assert D(acct.total_liability_of_btc) > 0 and D(acct.margin_level) > 1
    mid = {a.asset: a for a in acct.user_assets}
    assert D(mid["USDC"].borrowed) - D(before["USDC"].borrowed) == 1000
    assert D(mid["USDC"].free) - D(before["USDC"].free) == 1000
    sdk_data(margin.margin_account_borrow_repay(asset="USDC", is_isolated="FALSE", amount="1000", type="REPAY"))
    after = _cross(margin)
    assert D(after["USDC"].borrowed) == D(before["USDC"].borrowed)


def test_margin_buy_then_auto_repay(margin, exchange):
    before = _cross(margin)
    free = D(before["USDC"].free)
    qty = ((free + 20000) / D("60000")).quantize(D("0.00001"))  # costs ~20000 more than the free USDC
    o = sdk_data(margin.margin_account_new_order(symbol=SYMBOL, side="BUY", type="MARKET", quantity=qty,
                                                 side_effect_type="MARGIN_BUY", new_client_order_id="sdk-mb1"),
                 lenient=BORROW_AMOUNT)
    assert val(o, "status") == "FILLED" and val(o, "isIsolated") is False
    assert val(o, "marginBuyBorrowAsset") == "USDC" and isinstance(val(o, "marginBuyBorrowAmount"), (int, float))
    mid = _cross(margin)
    borrowed = D(mid["USDC"].borrowed) - D(before["USDC"].borrowed)
    assert borrowed > 0 and abs(D(str(val(o, "marginBuyBorrowAmount"))) - borrowed) < D("0.00000001")

    s = sdk_data(margin.margin_account_new_order(symbol=SYMBOL, side="SELL", type="MARKET", quantity=qty,
                                                 side_effect_type="AUTO_REPAY"))
    assert s.status == "FILLED"
    after = _cross(margin)
    assert D(after["USDC"].borrowed) == D(before["USDC"].borrowed)  # the proceeds repaid the loan
    trades = sdk_data(margin.query_margin_accounts_trade_list(symbol=SYMBOL, order_id=s.order_id))
    assert [t.order_id for t in trades] == [s.order_id] and trades[0].is_isolated is False


def test_isolated_margin_buy_integral_borrow_parses_strictly(margin):
    """A resting MARGIN_BUY limit borrows price x qty - free; with a whole-number shortfall the SDK's integer
    model of marginBuyBorrowAmount fits."""
    pair = sdk_data(margin.query_isolated_margin_account_info(symbols=SYMBOL)).assets[0]
    free = D(pair.quote_asset.free)
    assert free == free.to_integral_value()
    qty = ((free + 1000) / D("50000")).quantize(D("0.00001"))
    short = qty * 50000 - free
    if short != short.to_integral_value():
        pytest.skip("isolated USDC balance does not allow a whole-number shortfall")
    o = sdk_data(margin.margin_account_new_order(
        symbol=SYMBOL, side="BUY", type="LIMIT", quantity=qty, price=D("50000.00"), time_in_force="GTC",
        is_isolated="TRUE", side_effect_type="MARGIN_BUY"))
    assert o.status == "NEW" and o.margin_buy_borrow_asset == "USDC" and o.margin_buy_borrow_amount == short
    sdk_data(margin.margin_account_cancel_order(symbol=SYMBOL, is_isolated="TRUE", order_id=o.order_id),
             lenient=CANCEL_ORDER_ID)
    # autoRepayAtCancel was not sent: Binance's default (true) gives the order's loan back at the cancel
    pair = sdk_data(margin.query_isolated_margin_account_info(symbols=SYMBOL)).assets[0]
    assert D(pair.quote_asset.borrowed) == 0 and D(pair.quote_asset.free) == free


def test_isolated_limit_order_query_cancel(margin):
    sdk_data(margin.margin_account_borrow_repay(asset="BTC", is_isolated="TRUE", symbol=SYMBOL, amount="0.01",
                                                type="BORROW"))
    info = sdk_data(margin.query_isolated_margin_account_info(symbols=SYMBOL))
    pair = info.assets[0]
    assert pair.symbol == SYMBOL and pair.base_asset.asset == "BTC" and D(pair.base_asset.borrowed) >= D("0.01")
    assert D(info.total_liability_of_btc) > 0

    o = sdk_data(margin.margin_account_new_order(
        symbol=SYMBOL, side="SELL", type="LIMIT", quantity=Q, price=D("61000.00"), time_in_force="GTC",
        is_isolated="TRUE", new_client_order_id="sdk-iso1"))
    assert o.is_isolated is True and o.status == "NEW"
    q1 = sdk_data(margin.query_margin_accounts_order(symbol=SYMBOL, is_isolated="TRUE", order_id=o.order_id))
    q2 = sdk_data(margin.query_margin_accounts_order(symbol=SYMBOL, is_isolated="TRUE",
                                                     orig_client_order_id="sdk-iso1"))
    assert q1 == q2 and q1.is_isolated is True and q1.status == "NEW"
    opens = sdk_data(margin.query_margin_accounts_open_orders(symbol=SYMBOL, is_isolated="TRUE"))
    assert [x.order_id for x in opens] == [o.order_id]
    # The same order is not in the cross wallet.
    e = sdk_error(lambda: margin.query_margin_accounts_order(symbol=SYMBOL, order_id=o.order_id))
    assert (e.status_code, e.error_message) == (-2013, "Order does not exist.")
    c = sdk_data(margin.margin_account_cancel_order(symbol=SYMBOL, is_isolated="TRUE",
                                                    orig_client_order_id="sdk-iso1"), lenient=CANCEL_ORDER_ID)
    assert val(c, "status") == "CANCELED" and val(c, "origClientOrderId") == "sdk-iso1"
    sdk_data(margin.margin_account_borrow_repay(asset="BTC", is_isolated="TRUE", symbol=SYMBOL, amount="0.01",
                                                type="REPAY"))


def test_margin_oco_place_query_cancel(margin):
    lst = sdk_data(margin.margin_account_new_oco(
        symbol=SYMBOL, side="SELL", quantity=Q, price=D("61000.00"), stop_price=D("59000.00"),
        stop_limit_price=D("58900.00"), stop_limit_time_in_force="GTC", list_client_order_id="sdk-moco"))
    assert lst.contingency_type == "OCO" and len(lst.orders) == 2 and lst.is_isolated is False
    assert sorted(r.type for r in lst.order_reports) == ["LIMIT_MAKER", "STOP_LOSS_LIMIT"]
    got = sdk_data(margin.query_margin_accounts_oco(order_list_id=lst.order_list_id, symbol=SYMBOL))
    assert got.list_client_order_id == "sdk-moco" and got.list_order_status == "EXECUTING"
    gone = sdk_data(margin.margin_account_cancel_oco(symbol=SYMBOL, list_client_order_id="sdk-moco"))
    assert gone.list_order_status == "ALL_DONE" and {r.status for r in gone.order_reports} == {"CANCELED"}


def test_margin_errors(margin):
    e = sdk_error(lambda: margin.margin_account_cancel_order(symbol=SYMBOL, order_id=99999999))
    assert isinstance(e, BadRequestError) and (e.status_code, e.error_message) == (-2011, "Unknown order sent.")
    e = sdk_error(lambda: margin.margin_account_new_order(
        symbol=SYMBOL, side="BUY", type="LIMIT", quantity=D("100"), price=D("59000.00"), time_in_force="GTC",
        side_effect_type="NO_SIDE_EFFECT"))
    assert (e.status_code, e.error_message) == (-2010, "Account has insufficient balance for requested action.")
    e = sdk_error(lambda: margin.margin_account_new_order(
        symbol=SYMBOL, side="BUY", type="LIMIT", quantity=Q, price=D("59000.001"), time_in_force="GTC"))
    assert (e.status_code, e.error_message) == (-1013, "Filter failure: PRICE_FILTER")
    e = sdk_error(lambda: margin.margin_account_borrow_repay(asset="BTC", is_isolated="FALSE", amount="1000000",
                                                             type="REPAY"))
    assert isinstance(e, BadRequestError) and e.status_code in (-3015, -3041)


@pytest.mark.parametrize("effect", ["NO_SIDE_EFFECT", "MARGIN_BUY", "AUTO_REPAY", "AUTO_BORROW_REPAY"])
def test_side_effect_types_accepted(margin, effect):
    o = sdk_data(margin.margin_account_new_order(symbol=SYMBOL, side="BUY", type="LIMIT", quantity=Q,
                                                 price=D("50000.00"), time_in_force="GTC", side_effect_type=effect))
    assert o.status == "NEW"
    sdk_data(margin.margin_account_cancel_order(symbol=SYMBOL, order_id=o.order_id), lenient=CANCEL_ORDER_ID)
