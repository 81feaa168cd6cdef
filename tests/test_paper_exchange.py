"""Paper exchange spot orders through the real client over loopback HTTP: filters, fills, stops, fees."""
from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import pytest

from shared.adapters.binance_rest import CancelReplaceFailed, CancelReplacePartial, NotFound, Rejected
from shared.domain.orders import avg_fill_price, order_is_open

from tests.pe_helpers import SYMBOL, Paper, paper_env, pe  # noqa: F401  (pytest fixture: a real paper exchange)

Q = Decimal("0.001")
TICK = Decimal("0.01")


def _limit(c, side, qty, price, cid, tif="GTC"):
    return c.place_order(SYMBOL, side, "LIMIT", qty, price=price, time_in_force=tif, client_order_id=cid)


def _stop(c, side, qty, stop, price, cid, kind="STOP_LOSS_LIMIT"):
    return c.place_order(SYMBOL, side, kind, qty, price=price, stop_price=stop, time_in_force="GTC",
                         client_order_id=cid)


def test_place_query_by_id_and_client_id_then_cancel(pe):
    c = pe.client()
    bid, _ = c.book_ticker(SYMBOL)
    o = _limit(c, "BUY", Q, bid - 100, "q1")
    assert o.status == "NEW" and o.client_order_id == "q1" and order_is_open(o)
    by_id = c.get_order(SYMBOL, order_id=o.order_id)
    by_cid = c.get_order(SYMBOL, client_order_id="q1")
    assert by_id == by_cid and by_id.price == bid - 100 and by_id.orig_qty == Q
    assert [x.order_id for x in c.open_orders(SYMBOL)] == [o.order_id]
    cancelled = c.cancel_order(SYMBOL, client_order_id="q1")
    assert cancelled.status == "CANCELED" and cancelled.client_order_id == "q1"
    assert c.get_order(SYMBOL, order_id=o.order_id).status == "CANCELED"
    assert c.open_orders(SYMBOL) == []
    with pytest.raises(NotFound):
        c.cancel_order(SYMBOL, order_id=o.order_id)
    assert c.account()["USDC"] == (Decimal(10000), Decimal(0))


@pytest.mark.parametrize("qty,price_off,msg", [
    (Decimal("0.001"), Decimal("0.005"), "Filter failure: PRICE_FILTER"),
    (Decimal("0.0010001"), Decimal(0), "Filter failure: LOT_SIZE"),
    (Decimal("0.000001"), Decimal(0), "Filter failure: LOT_SIZE"),
    (Decimal("0.00005"), Decimal(0), "Filter failure: NOTIONAL"),
])
def test_filter_failures_are_1013(pe, qty, price_off, msg):
    c = pe.client()
    bid, _ = c.book_ticker(SYMBOL)
    with pytest.raises(Rejected) as ei:
        _limit(c, "BUY", qty, bid - 100 + price_off, "f1")
    assert (ei.value.code, ei.value.msg, ei.value.http_status) == (-1013, msg, 400)
    assert pe.get("/admin/orders") == []


def test_limit_buy_at_or_above_ask_fills_as_taker_at_ask(pe):
    c = pe.client()
    _, ask = c.book_ticker(SYMBOL)
    o = _limit(c, "BUY", Q, ask + 50, "t1")
    assert o.status == "FILLED" and o.executed_qty == Q
    assert [f.price for f in o.fills] == [ask]
    assert o.fills[0].commission == Decimal("0.000001") and o.fills[0].commission_asset == "BTC"
    assert avg_fill_price(o) == ask
    usdc, btc = c.account()["USDC"], c.account()["BTC"]
    assert usdc == (Decimal(10000) - ask * Q, Decimal(0))
    assert btc == (Decimal("0.5") + Q - Decimal("0.000001"), Decimal(0))


def test_resting_limit_fills_only_when_traded_strictly_through(pe):
    c = pe.client()
    last = pe.last()
    o = _limit(c, "BUY", Q, last - 10, "r1")
    assert o.status == "NEW"
    pe.price(last - 10)  # touched, not traded through
    assert c.get_order(SYMBOL, order_id=o.order_id).status == "NEW"
    pe.price(last - Decimal("10.01"))
    done = c.get_order(SYMBOL, order_id=o.order_id)
    assert done.status == "FILLED" and avg_fill_price(done) == last - 10
    trades = c.my_trades(SYMBOL, o.order_id)
    assert len(trades) == 1 and trades[0].is_maker and trades[0].price == last - 10


def test_partial_fill_ratio(tmp_path):
    p = Paper(paper_env(tmp_path, PAPER_PARTIAL_FILL_RATIO="0.4"))
    try:
        c = p.client()
        last = p.last()
        o = _limit(c, "SELL", Decimal("0.01"), last + 20, "pf1")
        p.price(last + 25)
        got = c.get_order(SYMBOL, order_id=o.order_id)
        assert got.status == "PARTIALLY_FILLED" and got.executed_qty == Decimal("0.004")
        for _ in range(3):  # every point trading above the limit fills 40 % of what remains, floored to the step
            p.price(last + 25)
        got = c.get_order(SYMBOL, order_id=o.order_id)
        assert got.executed_qty == Decimal("0.004") + Decimal("0.0024") + Decimal("0.00144") + Decimal("0.00086")
        assert got.status == "PARTIALLY_FILLED"
    finally:
        p.stop()


def test_market_orders_fill_with_slippage(pe):
    c = pe.client()
    bid, ask = c.book_ticker(SYMBOL)
    buy = c.place_order(SYMBOL, "BUY", "MARKET", Q, client_order_id="m1")
    expected_buy = (ask * Decimal("1.0001") / TICK).to_integral_value(ROUND_CEILING) * TICK
    assert buy.status == "FILLED" and buy.fills[0].price == expected_buy
    sell = c.place_order(SYMBOL, "SELL", "MARKET", Q, client_order_id="m2")
    expected_sell = (bid * Decimal("0.9999") / TICK).to_integral_value(ROUND_FLOOR) * TICK
    assert sell.fills[0].price == expected_sell
    assert sell.fills[0].commission_asset == "USDC"
    assert sell.fills[0].commission == (expected_sell * Q * Decimal("0.001")).quantize(Decimal("0.00000001"))
    quote = c.place_order(SYMBOL, "BUY", "MARKET", None, quote_order_qty=Decimal("100"), client_order_id="m3")
    assert quote.executed_qty == (Decimal(100) / expected_buy).quantize(Decimal("0.00001"), ROUND_FLOOR)


def test_stop_limit_triggers_where_the_path_crosses_it_and_fills_there(pe):
    c = pe.client()
    last = pe.last()
    o = _stop(c, "SELL", Q, last - 100, last - 150, "s1")
    assert o.status == "NEW"
    q = c.get_order(SYMBOL, order_id=o.order_id)
    assert q.is_working is False and q.stop_price == last - 100
    pe.price(last - 50)
    assert c.get_order(SYMBOL, order_id=o.order_id).status == "NEW"
    pe.price(last - 120)
    done = c.get_order(SYMBOL, order_id=o.order_id)
    assert done.status == "FILLED" and done.is_working
    # The move traded every price down to last-120: it crossed the stop, where the limit was marketable.
    assert avg_fill_price(done) == last - 100


def test_stop_limit_after_a_gap_fills_at_the_book(pe):
    c = pe.client()
    last = pe.last()
    o = _stop(c, "SELL", Q, last - 100, last - 150, "s1g")
    pe.price(last - 120, gap=True)  # jumped: no trade at the stop price
    done = c.get_order(SYMBOL, order_id=o.order_id)
    assert done.status == "FILLED" and avg_fill_price(done) == last - 120


def test_stop_limit_gapped_through_its_limit_stays_open(pe):
    c = pe.client()
    last = pe.last()
    o = _stop(c, "SELL", Q, last - 100, last - 110, "g1")
    pe.price(last - 130, gap=True)
    gapped = c.get_order(SYMBOL, order_id=o.order_id)
    assert gapped.status == "NEW" and gapped.is_working and gapped.executed_qty == 0
    assert c.account()["BTC"][1] == Q  # still locked
    pe.price(last - 110)  # back to the limit: touched, not through
    assert c.get_order(SYMBOL, order_id=o.order_id).status == "NEW"
    pe.price(last - 105)
    done = c.get_order(SYMBOL, order_id=o.order_id)
    assert done.status == "FILLED" and avg_fill_price(done) == last - 110


def test_take_profit_limit_triggers(pe):
    c = pe.client()
    last = pe.last()
    o = _stop(c, "SELL", Q, last + 100, last + 90, "tp1", kind="TAKE_PROFIT_LIMIT")
    pe.price(last + 99)
    assert c.get_order(SYMBOL, order_id=o.order_id).status == "NEW"
    pe.price(last + 101)
    assert c.get_order(SYMBOL, order_id=o.order_id).status == "FILLED"


def test_stop_that_would_trigger_immediately_is_rejected(pe):
    c = pe.client()
    last = pe.last()
    with pytest.raises(Rejected) as ei:
        _stop(c, "SELL", Q, last + 1, last - 10, "bad-stop")
    assert (ei.value.code, ei.value.msg) == (-2010, "Stop price would trigger immediately.")
    with pytest.raises(Rejected):
        _stop(c, "BUY", Q, last - 1, last + 10, "bad-stop2")


def test_limit_maker_that_would_take_is_rejected(pe):
    c = pe.client()
    _, ask = c.book_ticker(SYMBOL)
    with pytest.raises(Rejected) as ei:
        c.place_order(SYMBOL, "BUY", "LIMIT_MAKER", Q, price=ask, client_order_id="lm1")
    assert (ei.value.code, ei.value.msg) == (-2010, "Order would immediately match and take.")
    ok = c.place_order(SYMBOL, "BUY", "LIMIT_MAKER", Q, price=ask - TICK, client_order_id="lm2")
    assert ok.status == "NEW"


def test_locked_balance_rejects_a_second_sell(pe):
    c = pe.client()
    last = pe.last()
    _limit(c, "SELL", Decimal("0.4"), last + 500, "l1")
    assert c.account()["BTC"] == (Decimal("0.1"), Decimal("0.4"))
    with pytest.raises(Rejected) as ei:
        _limit(c, "SELL", Decimal("0.2"), last + 600, "l2")
    assert (ei.value.code, ei.value.msg) == (-2010, "Account has insufficient balance for requested action.")
    with pytest.raises(Rejected):
        c.place_order(SYMBOL, "SELL", "MARKET", Decimal("0.2"), client_order_id="l3")
    buy_lock = _limit(c, "BUY", Decimal("0.1"), last - 1000, "l4")
    assert c.account()["USDC"][1] == buy_lock.price * Decimal("0.1")


def test_duplicate_client_order_id_among_open_orders(pe):
    c = pe.client()
    last = pe.last()
    _limit(c, "BUY", Q, last - 100, "dup")
    with pytest.raises(Rejected) as ei:
        _limit(c, "BUY", Q, last - 200, "dup")
    assert (ei.value.code, ei.value.msg) == (-2010, "Duplicate order sent.")
    c.cancel_order(SYMBOL, client_order_id="dup")
    again = _limit(c, "BUY", Q, last - 300, "dup")  # reusable once the first is closed
    assert c.get_order(SYMBOL, client_order_id="dup").order_id == again.order_id


def test_fees_in_my_trades(pe):
    c = pe.client()
    bid, ask = c.book_ticker(SYMBOL)
    buy = _limit(c, "BUY", Q, ask, "fee-b")
    sell = _limit(c, "SELL", Q, bid, "fee-s")
    trades = {t.order_id: t for t in c.my_trades(SYMBOL)}
    tb, ts = trades[buy.order_id], trades[sell.order_id]
    assert (tb.commission, tb.commission_asset, tb.is_buyer) == (Decimal("0.000001"), "BTC", True)
    sell_fee = (bid * Q / 1000).quantize(Decimal("1E-8"))
    assert (ts.commission, ts.commission_asset, ts.is_buyer) == (sell_fee, "USDC", False)
    assert ts.quote_qty == bid * Q and not ts.is_maker
    assert tb.time == pe.get("/admin/state")["market_ts_ms"]  # market time, not wall time


def test_cancel_replace_moves_a_stop(pe):
    c = pe.client()
    last = pe.last()
    _stop(c, "SELL", Q, last - 100, last - 110, "stop-1")
    cancelled, new = c.cancel_replace(SYMBOL, "SELL", "STOP_LOSS_LIMIT", Q, cancel_orig_client_order_id="stop-1",
                                      new_client_order_id="stop-2", price=last - 60, stop_price=last - 50,
                                      time_in_force="GTC")
    assert cancelled.status == "CANCELED" and cancelled.client_order_id == "stop-1"
    assert new.status == "NEW" and new.stop_price == last - 50 and new.client_order_id == "stop-2"
    assert [o.client_order_id for o in c.open_orders(SYMBOL)] == ["stop-2"]
    assert c.account()["BTC"][1] == Q  # the lock moved, not doubled


def test_cancel_replace_failures(pe):
    c = pe.client()
    last = pe.last()
    with pytest.raises(CancelReplaceFailed) as ei:
        c.cancel_replace(SYMBOL, "SELL", "STOP_LOSS_LIMIT", Q, cancel_orig_client_order_id="missing",
                         new_client_order_id="x2", price=last - 60, stop_price=last - 50, time_in_force="GTC")
    assert ei.value.code == -2022 and ei.value.new_result == "NOT_ATTEMPTED" and ei.value.cancel_error[0] == -2011
    _stop(c, "SELL", Q, last - 100, last - 110, "p-1")
    with pytest.raises(CancelReplacePartial) as ep:  # the new stop would trigger immediately
        c.cancel_replace(SYMBOL, "SELL", "STOP_LOSS_LIMIT", Q, cancel_orig_client_order_id="p-1",
                         new_client_order_id="p-2", price=last, stop_price=last + 10, time_in_force="GTC")
    e = ep.value
    assert (e.code, e.http_status, e.cancel_result, e.new_result) == (-2021, 409, "SUCCESS", "FAILURE")
    assert e.cancel_order.status == "CANCELED" and e.new_error == (-2010, "Stop price would trigger immediately.")
    assert pe.order("p-1")["status"] == "CANCELED" and c.open_orders(SYMBOL) == []


@pytest.mark.parametrize("qty, price_off, msg", [
    (Q, Decimal("0.001"), "Filter failure: PRICE_FILTER"),
    (Decimal("0.0010001"), 0, "Filter failure: LOT_SIZE"),
    (Decimal("0.00002"), 0, "Filter failure: NOTIONAL"),
])
def test_cancel_replace_filter_failure_fails_both_and_keeps_the_old_order(pe, qty, price_off, msg):
    """Binance evaluates the new order's filters before the cancel: -2022 (HTTP 400), both parts FAILURE, the old
    order still open and still locking its coins."""
    c = pe.client()
    last = pe.last()
    _stop(c, "SELL", Q, last - 100, last - 110, "f-1")
    with pytest.raises(CancelReplaceFailed) as ei:
        c.cancel_replace(SYMBOL, "SELL", "STOP_LOSS_LIMIT", qty, cancel_orig_client_order_id="f-1",
                         new_client_order_id="f-2", price=last - 60 + price_off, stop_price=last - 50,
                         time_in_force="GTC")
    e = ei.value
    assert (e.code, e.http_status, e.cancel_result, e.new_result) == (-2022, 400, "FAILURE", "FAILURE")
    assert e.new_error == (-1013, msg) and e.cancel_error == (-1013, msg)
    assert pe.order("f-1")["status"] == "NEW" and [o.client_order_id for o in c.open_orders(SYMBOL)] == ["f-1"]
    assert not [o for o in pe.get("/admin/orders") if o["clientOrderId"] == "f-2"]
    assert c.account()["BTC"][1] == Q


def test_new_stop_order_reports_not_working(pe):
    c = pe.client()
    last = pe.last()
    o = _stop(c, "SELL", Q, last - 100, last - 110, "nw1")
    assert o.is_working is False and o.working_time == -1
    lim = _limit(c, "SELL", Q, last + 100, "nw2")
    assert lim.is_working is True


@pytest.mark.parametrize("kw,code", [
    ({"order_type": "LIMIT", "price": Decimal("90000")}, -1102),  # no timeInForce
    ({"order_type": "MARKET", "price": Decimal("90000")}, -1106),  # price not taken by MARKET
    ({"order_type": "STOP_LOSS_LIMIT", "price": Decimal("90000"), "time_in_force": "GTC"}, -1102),  # no stopPrice
    ({"order_type": "LIMIT", "price": Decimal("90000"), "time_in_force": "GTX"}, -1115),
    ({"order_type": "TRAILING", "price": Decimal("90000")}, -1116),
    ({"order_type": "LIMIT", "price": Decimal("90000"), "time_in_force": "GTC", "symbol": "ETHUSDC"}, -1121),
])
def test_parameter_errors(pe, kw, code):
    c = pe.client()
    symbol = kw.pop("symbol", SYMBOL)
    with pytest.raises(Rejected) as ei:
        c.place_order(symbol, "BUY", quantity=Q, client_order_id="pe1", **kw)
    assert ei.value.code == code and ei.value.http_status == 400
    assert pe.get("/admin/orders") == []


def test_ioc_that_cannot_fill_expires(pe):
    c = pe.client()
    bid, _ = c.book_ticker(SYMBOL)
    o = _limit(c, "BUY", Q, bid - 50, "ioc1", tif="IOC")
    assert o.status == "EXPIRED" and o.executed_qty == 0
    assert c.account()["USDC"] == (Decimal(10000), Decimal(0))


def test_concurrent_clients_are_serialised_by_the_engine_lock(pe):
    import threading
    last = pe.last()
    errors: list[BaseException] = []

    def worker(n: int) -> None:
        c = pe.client()
        try:
            for i in range(15):
                o = _limit(c, "BUY", Q, last - 100 - n, f"cc-{n}-{i}")
                if i % 2:
                    c.cancel_order(SYMBOL, order_id=o.order_id)
        except BaseException as e:  # collected and re-raised in the main thread below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not errors, errors
    orders = pe.get("/admin/orders")
    assert len(orders) == 90 and len({o["orderId"] for o in orders}) == 90
    open_ = [o for o in orders if o["status"] == "NEW"]
    assert len(open_) == 6 * 8
    locked = sum(Decimal(o["price"]) * Decimal(o["origQty"]) for o in open_)
    assert pe.balances()["USDC"] == (Decimal(10000) - locked, locked)
