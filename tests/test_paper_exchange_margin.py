"""Margin (cross and isolated) through the client's margin mode: routing, loans, side effects."""
from __future__ import annotations

import hashlib
import hmac
import time
from decimal import ROUND_FLOOR, Decimal
from urllib.parse import urlencode

import pytest
import requests

from shared.adapters.binance_rest import NotFound, Rejected
from shared.adapters.market_files import write_bars

from tests.pe_helpers import SYMBOL, pe  # noqa: F401  (pytest fixture: a real paper exchange)


def test_margin_orders_route_to_their_own_wallet(pe):
    spot, cross = pe.client(), pe.client(margin="cross")
    bid, _ = cross.book_ticker(SYMBOL)
    o = cross.place_order(SYMBOL, "BUY", "LIMIT", Decimal("0.01"), price=bid - 100, time_in_force="GTC",
                          client_order_id="m-rest")
    assert o.status == "NEW" and o.is_isolated is False
    assert [x.order_id for x in cross.open_orders(SYMBOL)] == [o.order_id]
    assert spot.open_orders(SYMBOL) == []
    with pytest.raises(NotFound):
        spot.get_order(SYMBOL, order_id=o.order_id)
    assert cross.get_order(SYMBOL, client_order_id="m-rest").order_id == o.order_id
    assert cross.margin_account()["USDC"].locked == (bid - 100) * Decimal("0.01")
    assert spot.account()["USDC"] == (Decimal(10000), Decimal(0))
    assert cross.cancel_order(SYMBOL, order_id=o.order_id).status == "CANCELED"
    assert pe.order("m-rest")["account"] == "CROSS"


def test_margin_buy_borrows_the_shortfall(pe):
    cross = pe.client(margin="cross")
    _, ask = cross.book_ticker(SYMBOL)
    qty = Decimal("0.15")
    o = cross.place_order(SYMBOL, "BUY", "LIMIT", qty, price=ask, time_in_force="GTC", client_order_id="mb1",
                          side_effect_type="MARGIN_BUY")
    assert o.status == "FILLED"
    assert o.margin_buy_borrow_asset == "USDC" and o.margin_buy_borrow_amount == ask * qty - 10000
    usdc = cross.margin_account()["USDC"]
    assert usdc.borrowed == ask * qty - 10000 and usdc.free == 0
    assert cross.my_trades(SYMBOL)[0].order_id == o.order_id
    assert pe.client().my_trades(SYMBOL) == []  # spot trades are separate


def test_borrow_repay_and_max_borrowable(pe):
    cross = pe.client(margin="cross")
    last = pe.last()
    net = Decimal(10000) + Decimal("0.5") * last
    expected = (net * 2).quantize(Decimal("0.00000001"), ROUND_FLOOR)  # leverage 3: liabilities up to 2x net
    assert cross.max_borrowable("USDC") == expected
    cross.borrow("USDC", Decimal("100"))
    acct = cross.margin_account()["USDC"]
    assert (acct.free, acct.borrowed, acct.net_asset) == (Decimal(10100), Decimal(100), Decimal(10000))
    with pytest.raises(Rejected) as ei:
        cross.repay("USDC", Decimal("100.01"))
    assert ei.value.code == -3015
    cross.repay("USDC", Decimal("100"))
    assert cross.margin_account()["USDC"].borrowed == 0
    with pytest.raises(Rejected) as ei:
        cross.borrow("USDC", expected + 1)
    assert ei.value.code == -3006


def test_isolated_short_with_auto_borrow_then_auto_repay(pe):
    iso = pe.client(margin="isolated")
    qty = Decimal("0.8")  # the isolated wallet holds 0.5 BTC: 0.3 is borrowed
    sell = iso.place_order(SYMBOL, "SELL", "MARKET", qty, client_order_id="short", side_effect_type="AUTO_BORROW_REPAY")
    assert sell.status == "FILLED" and sell.is_isolated
    btc = iso.isolated_account(SYMBOL)["BTC"]
    assert (btc.borrowed, btc.free) == (Decimal("0.3"), Decimal(0))
    assert pe.client(margin="cross").margin_account()["BTC"].borrowed == 0
    cover = iso.place_order(SYMBOL, "BUY", "MARKET", Decimal("0.31"), client_order_id="cover",
                            side_effect_type="AUTO_REPAY")
    btc = iso.isolated_account(SYMBOL)["BTC"]
    received = Decimal("0.31") - cover.fills[0].commission
    assert btc.borrowed == 0 and btc.free == received - Decimal("0.3")


def _margin_oco(c, last, tag, **kw):
    return c.place_oco(SYMBOL, "SELL", Decimal("0.2"), above_type="LIMIT_MAKER", above_price=last + 200,
                       below_type="STOP_LOSS_LIMIT", below_stop_price=last - 100, below_price=last - 110,
                       below_time_in_force="GTC", list_client_order_id=f"{tag}-l", above_client_order_id=f"{tag}-tp",
                       below_client_order_id=f"{tag}-sl", **kw)


def test_margin_oco_routes_to_the_margin_wallet(pe):
    iso, spot = pe.client(margin="isolated"), pe.client()
    last = pe.last()
    lst = _margin_oco(iso, last, "mo")
    assert {o.client_order_id for o in lst.order_reports} == {"mo-tp", "mo-sl"}
    assert iso.isolated_account(SYMBOL)["BTC"].locked == Decimal("0.2")
    assert spot.account()["BTC"] == (Decimal("0.5"), Decimal(0))
    assert iso.get_order_list(list_client_order_id="mo-l", symbol=SYMBOL).order_list_id == lst.order_list_id
    with pytest.raises(NotFound):
        spot.get_order_list(list_client_order_id="mo-l")
    pe.price(last - 105)
    assert (pe.order("mo-sl")["status"], pe.order("mo-tp")["status"]) == ("FILLED", "EXPIRED")
    _margin_oco(iso, pe.last(), "mo2")
    cancelled = iso.cancel_order_list(SYMBOL, list_client_order_id="mo2-l")
    assert {o.status for o in cancelled.order_reports} == {"CANCELED"}
    assert iso.isolated_account(SYMBOL)["BTC"].locked == 0


def test_margin_cancel_replace_is_cancel_then_place(pe):
    from shared.adapters.binance_rest import CancelReplaceFailed, CancelReplacePartial
    cross = pe.client(margin="cross")
    last = pe.last()
    q = Decimal("0.01")
    cross.place_order(SYMBOL, "SELL", "STOP_LOSS_LIMIT", q, price=last - 110, stop_price=last - 100,
                      time_in_force="GTC", client_order_id="ms1")
    old, new = cross.cancel_replace(SYMBOL, "SELL", "STOP_LOSS_LIMIT", q, cancel_orig_client_order_id="ms1",
                                    new_client_order_id="ms2", price=last - 60, stop_price=last - 50,
                                    time_in_force="GTC")
    assert (old.status, old.client_order_id, new.status, new.stop_price) == ("CANCELED", "ms1", "NEW", last - 50)
    with pytest.raises(CancelReplaceFailed):
        cross.cancel_replace(SYMBOL, "SELL", "STOP_LOSS_LIMIT", q, cancel_orig_client_order_id="ms1",
                             new_client_order_id="ms3", price=last - 60, stop_price=last - 50, time_in_force="GTC")
    with pytest.raises(CancelReplacePartial) as ei:
        cross.cancel_replace(SYMBOL, "SELL", "STOP_LOSS_LIMIT", q, cancel_orig_client_order_id="ms2",
                             new_client_order_id="ms4", price=last, stop_price=last + 10, time_in_force="GTC")
    assert ei.value.cancel_order.status == "CANCELED" and ei.value.new_error[0] == -2010
    assert cross.open_orders(SYMBOL) == []


def test_margin_debts(pe):
    iso, cross = pe.client(margin="isolated"), pe.client(margin="cross")
    iso.borrow("BTC", Decimal("0.1"), symbol=SYMBOL)
    cross.borrow("USDC", Decimal("50"))
    assert iso.margin_debts(SYMBOL) == {"BTC": Decimal("0.1"), "USDC": Decimal(0)}
    assert cross.margin_debts(SYMBOL)["USDC"] == Decimal(50)
    assert cross.margin_debts(SYMBOL)["BTC"] == 0


def test_interest_accrues_hourly_in_market_time(tmp_path):
    from tests.pe_helpers import Paper, paper_env
    p = Paper(paper_env(tmp_path, PAPER_MARGIN_INTEREST_HOURLY="0.0001"))
    try:
        cross = p.client(margin="cross")
        cross.borrow("USDC", Decimal("1000"))
        assert cross.margin_account()["USDC"].interest == Decimal("0.1")  # first hour charged at once
        ts = p.get("/admin/state")["market_ts"]
        p.post("/admin/advance", {"to_ts": ts - ts % 3600 + 3600})
        assert cross.margin_account()["USDC"].interest == Decimal("0.2")
        with pytest.raises(Rejected):
            cross.repay("USDC", Decimal("1000.21"))
        cross.repay("USDC", Decimal("1000.2"))
        assert cross.margin_debts(SYMBOL)["USDC"] == 0
    finally:
        p.stop()


def test_client_default_side_effect(pe):
    iso = pe.client(margin="isolated", side_effect_type="AUTO_BORROW_REPAY")
    o = iso.place_order(SYMBOL, "SELL", "MARKET", Decimal("0.6"), client_order_id="dse")
    assert o.margin_buy_borrow_amount == Decimal("0.1") and o.margin_buy_borrow_asset == "BTC"
    assert pe.order("dse")["sideEffectType"] == "AUTO_BORROW_REPAY"


def test_transient_2013_on_margin_query(pe):
    cross = pe.client(margin="cross")
    bid, _ = cross.book_ticker(SYMBOL)
    cross.place_order(SYMBOL, "BUY", "LIMIT", Decimal("0.01"), price=bid - 100, time_in_force="GTC",
                      client_order_id="mt1")
    pe.post("/admin/faults", {"transient_2013": 1, "path": "/sapi/v1/margin/order"})
    with pytest.raises(NotFound):
        cross.get_order(SYMBOL, client_order_id="mt1")
    assert cross.get_order(SYMBOL, client_order_id="mt1").status == "NEW"


# ---- allOrders: GET /sapi/v1/margin/allOrders (and the spot endpoint's limit / orderId) --------------------

def _signed(pe, path: str, **params) -> tuple[int, object, dict]:
    """A signed GET built by hand (so that any parameter, valid or not, can be sent): (status, body, headers)."""
    q = urlencode({**params, "timestamp": int(time.time() * 1000)})
    sig = hmac.new(pe.env["PAPER_API_SECRET"].encode(), q.encode(), hashlib.sha256).hexdigest()
    r = requests.get(f"{pe.url}{path}?{q}&signature={sig}", headers={"X-MBX-APIKEY": pe.env["PAPER_API_KEY"]},
                     timeout=5)
    return r.status_code, r.json(), r.headers


def _cids(body) -> list[str]:
    return [o["clientOrderId"] for o in body]


def _resting(c, tag: str, n: int) -> list[int]:
    """`n` BUY limits resting well below the market in `c`'s wallet; their order ids."""
    bid, _ = c.book_ticker(SYMBOL)
    return [c.place_order(SYMBOL, "BUY", "LIMIT", Decimal("0.01"), price=bid - 100 - i, time_in_force="GTC",
                          client_order_id=f"{tag}{i}").order_id for i in range(n)]


def test_margin_all_orders_keeps_the_wallets_apart(pe):
    spot, cross, iso = pe.client(), pe.client(margin="cross"), pe.client(margin="isolated")
    _resting(cross, "c", 1)
    _resting(iso, "i", 1)
    _resting(spot, "s", 1)
    cross.place_order(SYMBOL, "SELL", "MARKET", Decimal("0.01"), client_order_id="c-sold")
    cross.cancel_order(SYMBOL, client_order_id="c0")
    got = cross.all_orders(SYMBOL)
    assert [(o.client_order_id, o.status, o.is_isolated) for o in got] == [
        ("c0", "CANCELED", False), ("c-sold", "FILLED", False)]
    assert [(o.client_order_id, o.status, o.is_isolated) for o in iso.all_orders(SYMBOL)] == [("i0", "NEW", True)]
    assert [o.client_order_id for o in spot.all_orders(SYMBOL)] == ["s0"], "margin orders in the spot history"
    status, body, _ = _signed(pe, "/sapi/v1/margin/allOrders", symbol=SYMBOL)  # isIsolated defaults to FALSE
    assert status == 200 and _cids(body) == ["c0", "c-sold"] and {o["isIsolated"] for o in body} == {False}
    status, body, _ = _signed(pe, "/sapi/v1/margin/allOrders", symbol=SYMBOL, isIsolated="TRUE")
    assert _cids(body) == ["i0"] and body[0]["isIsolated"] is True and body[0]["symbol"] == SYMBOL


def test_margin_all_orders_refuses_bad_parameters(pe):
    path = "/sapi/v1/margin/allOrders"
    assert _signed(pe, path)[:2] == (400, {"code": -1102, "msg": "Mandatory parameter 'symbol' was not sent, "
                                                                  "was empty/null, or malformed."})
    assert _signed(pe, path, symbol=SYMBOL, isIsolated="MAYBE")[1]["code"] == -1100
    for bad in ("501", "0"):
        assert _signed(pe, path, symbol=SYMBOL, limit=bad)[:2] == (
            400, {"code": -1130, "msg": "Data sent for parameter 'limit' is not valid."})
    assert _signed(pe, path, symbol=SYMBOL, limit="ten")[1]["code"] == -1100
    assert _signed(pe, path, symbol=SYMBOL, limit="500")[0] == 200
    assert _signed(pe, path, symbol=SYMBOL, startTime=0, endTime=86_400_001)[1]["code"] == -1127


def test_margin_all_orders_order_id_limit_and_times(pe):
    cross = pe.client(margin="cross")
    ids = _resting(cross, "a", 2)
    t_late = pe.post("/admin/advance", {"points": 1})["market_ts_ms"]  # later orders carry a later time
    ids += _resting(cross, "b", 2)
    path = "/sapi/v1/margin/allOrders"
    assert _cids(_signed(pe, path, symbol=SYMBOL, limit=2)[1]) == ["b0", "b1"], "not the most recent, oldest first"
    assert [o.order_id for o in cross.all_orders(SYMBOL, limit=3)] == ids[1:]
    assert _cids(_signed(pe, path, symbol=SYMBOL, orderId=ids[1])[1]) == ["a1", "b0", "b1"]
    assert _cids(_signed(pe, path, symbol=SYMBOL, orderId=ids[1], limit=2)[1]) == ["a1", "b0"]
    assert _cids(_signed(pe, path, symbol=SYMBOL, startTime=t_late)[1]) == ["b0", "b1"]
    assert _cids(_signed(pe, path, symbol=SYMBOL, endTime=t_late - 1)[1]) == ["a0", "a1"]


def test_margin_all_orders_weighs_200_on_the_sapi_ip_counter(pe):
    _resting(pe.client(margin="cross"), "w", 1)
    for _ in range(3):  # a minute boundary between the two calls resets the counter: try again
        _, _, first = _signed(pe, "/sapi/v1/margin/allOrders", symbol=SYMBOL)
        _, _, second = _signed(pe, "/sapi/v1/margin/allOrders", symbol=SYMBOL)
        used = [int(h["X-SAPI-USED-IP-WEIGHT-1M"]) for h in (first, second)]
        if used[1] > used[0]:
            break
    assert used[1] - used[0] == 200
    assert "X-MBX-USED-WEIGHT-1M" not in second


def test_margin_all_orders_without_order_id_answers_the_last_24_hours(tmp_path):
    from tests.pe_helpers import Paper, paper_env, sample_bars
    write_bars(tmp_path / "market.aggregated.csv", sample_bars(1560))  # 26 h of minute bars
    p = Paper(paper_env(tmp_path))
    try:
        cross = p.client(margin="cross")
        (old,) = _resting(cross, "old", 1)
        p.post("/admin/advance", {"to_ts": p.get("/admin/state")["market_ts"] + 86_400 + 60})
        (new,) = _resting(cross, "new", 1)
        assert [o.order_id for o in cross.all_orders(SYMBOL)] == [new]
        assert _cids(_signed(p, "/sapi/v1/margin/allOrders", symbol=SYMBOL, orderId=old)[1]) == ["old0", "new0"]
        assert [o.order_id for o in p.client().all_orders(SYMBOL)] == [], "spot has no such window"
    finally:
        p.stop()


def test_spot_all_orders_limit_and_order_id(pe):
    spot = pe.client()
    ids = _resting(spot, "sp", 3)
    _resting(pe.client(margin="cross"), "mg", 1)
    assert [o.order_id for o in spot.all_orders(SYMBOL)] == ids
    assert [o.order_id for o in spot.all_orders(SYMBOL, limit=2)] == ids[1:]
    path = "/api/v3/allOrders"
    assert _cids(_signed(pe, path, symbol=SYMBOL, orderId=ids[1], limit=1)[1]) == ["sp1"]
    assert _cids(_signed(pe, path, symbol=SYMBOL, orderId=ids[0])[1]) == ["sp0", "sp1", "sp2"]
    assert _signed(pe, path, symbol=SYMBOL, limit=1000)[0] == 200
    assert _signed(pe, path, symbol=SYMBOL, limit=1001)[1]["code"] == -1130
