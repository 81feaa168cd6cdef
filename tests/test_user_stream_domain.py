"""Pure mapping of Binance user data events and REST orders to the `orders` stream structs."""
from __future__ import annotations

from decimal import Decimal

from shared.adapters.redis_streams import decode_fields, encode_fields
from shared.domain.order_updates import ListUpdate, OrderUpdate, from_execution_report, from_list_status, from_rest, \
    progress
from shared.domain.orders import Order

REPORT = {"e": "executionReport", "E": 1700000000100, "s": "BTCUSDC", "c": "web_cancel_1", "S": "SELL",
          "o": "STOP_LOSS_LIMIT", "f": "GTC", "q": "0.00100000", "p": "94000.00000000", "P": "94010.00000000",
          "F": "0.00000000", "g": 7, "C": "tk-s1-0", "x": "CANCELED", "X": "CANCELED", "r": "NONE", "i": 42,
          "l": "0.00000000", "z": "0.00040000", "L": "0.00000000", "n": "0", "N": None, "T": 1700000000099, "t": -1,
          "I": 1, "w": True, "m": False, "M": False, "O": 1700000000000, "Z": "37.60000000", "Y": "0.00000000",
          "Q": "0.00000000", "W": 1700000000050, "V": "EXPIRE_MAKER"}


def test_execution_report_of_a_cancel_names_the_order_not_the_cancel():
    u = from_execution_report(REPORT)
    assert (u.client_order_id, u.order_id, u.order_list_id, u.order_type, u.exec_type, u.status) == \
        ("tk-s1-0", 42, 7, "STOP_LOSS_LIMIT", "CANCELED", "CANCELED")
    assert (u.executed_qty, u.cum_quote, u.stop_price, u.commission_asset, u.source) == \
        (Decimal("0.0004"), Decimal("37.6"), Decimal("94010"), "", "ws")
    assert decode_fields({b"data": encode_fields(u)["data"]}) == u  # round trip through the stream union


def test_trade_report_keeps_the_trade_fields():
    ev = {**REPORT, "c": "tk-en-0", "C": "", "x": "TRADE", "X": "PARTIALLY_FILLED", "l": "0.0002", "L": "94000.5",
          "n": "0.00000020", "N": "BTC", "t": 99, "m": True}
    u = from_execution_report(ev)
    assert (u.client_order_id, u.last_qty, u.last_price, u.commission, u.trade_id, u.is_maker) == \
        ("tk-en-0", Decimal("0.0002"), Decimal("94000.5"), Decimal("0.0000002"), 99, True)


def test_list_status():
    lst = from_list_status({"e": "listStatus", "E": 5, "s": "BTCUSDC", "g": 3, "c": "OCO", "l": "ALL_DONE",
                            "L": "ALL_DONE", "r": "NONE", "C": "tk-l1", "T": 4,
                            "O": [{"s": "BTCUSDC", "i": 1, "c": "a"}, {"s": "BTCUSDC", "i": 2, "c": "b"}]})
    assert isinstance(lst, ListUpdate) and lst.order_list_id == 3 and [o.order_id for o in lst.orders] == [1, 2]
    assert decode_fields({b"data": encode_fields(lst)["data"]}) == lst


def test_rest_view_reports_the_change_since_the_last_update():
    o = Order(symbol="BTCUSDC", order_id=5, client_order_id="x", price=Decimal(100), orig_qty=Decimal(3),
              executed_qty=Decimal(3), cummulative_quote_qty=Decimal(300), status="FILLED", type="LIMIT", side="BUY",
              update_time=77)
    u = from_rest(o, prev_executed=Decimal(1), prev_cum_quote=Decimal(100))
    assert (u.exec_type, u.last_qty, u.last_price, u.source, u.event_time) == ("TRADE", 2, 100, "rest", 77)
    cancelled = from_rest(Order(symbol="BTCUSDC", order_id=6, status="CANCELED", type="LIMIT", side="BUY"))
    assert (cancelled.exec_type, cancelled.last_qty) == ("CANCELED", 0)


def test_progress_orders_every_real_change():
    steps = [("NEW", 0, False), ("NEW", 0, True), ("PARTIALLY_FILLED", 1, True), ("FILLED", 2, True)]
    ranks = [progress(s, Decimal(q), w) for s, q, w in steps]
    assert ranks == sorted(ranks) and len(set(ranks)) == len(ranks)
    assert progress("CANCELED", Decimal(1), True) > progress("PARTIALLY_FILLED", Decimal(1), True)
    assert isinstance(OrderUpdate(symbol="S", client_order_id="c", order_id=1, side="BUY", order_type="LIMIT",
                                  status="NEW", exec_type="NEW").is_open, bool)
