"""The chaos verdict's unprotected-window figure, from exchange records (no stack): per trade, the longest time
any filled quantity had no stop on the exchange, not only fill -> first stop."""
from __future__ import annotations

from decimal import Decimal as D

from chaos.checks import Evidence, verify
from chaos.exposure import gaps, worst_gap_sec
from shared.domain.orders import Trade
from shared.domain.position import State

TK = "250113-2000-L-abc123"
STEP = D("0.00001")


def order(oid: int, leg: str, typ: str, side: str, qty: str, t: int, status: str, upd: int, executed: str = "0",
          list_id: int = -1) -> dict:
    return {"symbol": "BTCUSDC", "orderId": oid, "orderListId": list_id, "clientOrderId": f"{TK}-{leg}-1",
            "type": typ, "side": side, "origQty": qty, "executedQty": executed, "status": status, "time": t,
            "updateTime": upd, "cummulativeQuoteQty": "0", "price": "0"}


def trade(oid: int, qty: str, t: int) -> Trade:
    return Trade(symbol="BTCUSDC", id=oid * 10, order_id=oid, price=D(95000), qty=D(qty), quote_qty=D(0),
                 commission=D(0), commission_asset="USDC", time=t, is_buyer=True, is_maker=False)


def ident(m: int) -> float:
    return m / 1000.0  # a market clock that is the wall clock: bounds are exact


def worst(orders, trades) -> float | None:
    return worst_gap_sec(gaps(orders, trades, STEP, "BTC"), ident, ident, None)[0]


ENTRY = order(1, "en", "LIMIT", "BUY", "0.00300", 0, "FILLED", 0, "0.00300")
TRADES = {1: [trade(1, "0.00300", 0)]}


def test_two_thirds_without_a_stop_for_3_s_is_3_s_not_the_first_stop_time():
    """The issue's case: the first leg's stop after 0.06 s, the other two thirds only after 3 s."""
    orders = [ENTRY, order(2, "s1", "STOP_LOSS_LIMIT", "SELL", "0.00100", 60, "NEW", 60),
              order(3, "s2", "STOP_LOSS_LIMIT", "SELL", "0.00100", 3000, "NEW", 3000),
              order(4, "s3", "STOP_LOSS_LIMIT", "SELL", "0.00100", 3000, "NEW", 3000)]
    assert worst(orders, TRADES) == 3.0
    g = gaps(orders, TRADES, STEP, "BTC")
    assert [(x.start_ms, x.end_ms, x.max_unprotected) for x in g] == [(0, 3000, D("0.00300"))]


def test_a_stop_replaced_later_counts_the_time_in_between():
    orders = [ENTRY, order(2, "st", "STOP_LOSS_LIMIT", "SELL", "0.00300", 100, "CANCELED", 5000),
              order(3, "st2", "STOP_LOSS_LIMIT", "SELL", "0.00300", 5400, "NEW", 5400)]
    assert round(worst(orders, TRADES), 6) == 0.4


def test_a_cancel_and_a_new_stop_in_the_same_instant_is_a_gap_of_that_instant():
    orders = [ENTRY, order(2, "st", "STOP_LOSS_LIMIT", "SELL", "0.00300", 100, "CANCELED", 5000),
              order(3, "st2", "STOP_LOSS_LIMIT", "SELL", "0.00300", 5000, "NEW", 5000)]
    g = gaps(orders, TRADES, STEP, "BTC")
    assert [(x.start_ms, x.end_ms) for x in g] == [(0, 100), (5000, 5000)]  # the order of the two is unknown


def test_stop_fills_and_oco_take_profits_are_no_gap():
    """A stop's own fill lowers held and cover at once; a take-profit's fill expires its OCO stop in the same
    step of the exchange; the rest stays covered."""
    orders = [ENTRY,
              order(2, "t1", "LIMIT_MAKER", "SELL", "0.00100", 50, "FILLED", 2000, "0.00100", list_id=7),
              order(3, "s1", "STOP_LOSS_LIMIT", "SELL", "0.00100", 50, "EXPIRED", 2000, list_id=7),
              order(4, "s2", "STOP_LOSS_LIMIT", "SELL", "0.00200", 50, "FILLED", 9000, "0.00200")]
    trades = {**TRADES, 2: [trade(2, "0.00100", 2000)], 4: [trade(4, "0.00200", 9000)]}
    assert [(x.start_ms, x.end_ms) for x in gaps(orders, trades, STEP, "BTC")] == [(0, 50)]  # only until the stops


def test_the_verdict_figure_is_the_longest_exposure():
    orders = [ENTRY, order(2, "s1", "STOP_LOSS_LIMIT", "SELL", "0.00100", 60, "NEW", 60),
              order(3, "s2", "STOP_LOSS_LIMIT", "SELL", "0.00200", 2900, "NEW", 2900)]
    ev = Evidence(orders=orders, entry_trades=TRADES, events=[], signals=[], rejects=[], state=State(), written=[],
                  window_target_sec=1.0, qty_step=STEP)
    v = verify(ev, ident, ident)
    [row] = v.windows
    assert row["window_sec"] == 2.9 and row["first_stop_sec"] == 0.06
    assert v.figures["worst_window_sec"] == 2.9 and v.figures["worst_first_stop_sec"] == 0.06
    assert any("unprotected (no stop on the exchange) for up to 2.90 s" in b for b in v.violations)


def test_an_entry_commission_paid_in_bnb_is_not_taken_from_what_is_held():
    """With fees paid in BNB the buy's commission is not in BTC: the whole fill is held and must be covered (the
    check read any commission that is not the quote asset as base)."""
    from shared.domain.position import Phase, Position
    pos = Position(trade_key=TK, signal_key="k", symbol="BTCUSDC", side="long", status=Phase.OPEN_FILLED,
                   entry_mode="LIMIT", entry_price=D(95000), qty=D("0.003"), sl=D(94000), tp1=D(96000), tp2=D(97000),
                   r=D(1000), signal_price=D(95000), signal_ts=0.0, created_at=0.0, entry_client_id=f"{TK}-en-1")
    bnb = Trade(symbol="BTCUSDC", id=10, order_id=1, price=D(95000), qty=D("0.00300"), quote_qty=D(285),
                commission=D("0.00002"), commission_asset="BNB", time=0, is_buyer=True, is_maker=False)
    in_btc = Trade(symbol="BTCUSDC", id=10, order_id=1, price=D(95000), qty=D("0.00300"), quote_qty=D(285),
                   commission=D("0.00002"), commission_asset="BTC", time=0, is_buyer=True, is_maker=False)
    orders = [ENTRY, order(2, "tr", "STOP_LOSS_LIMIT", "SELL", "0.00298", 10, "NEW", 10)]
    for trades, uncovered in (({1: [bnb]}, True), ({1: [in_btc]}, False)):
        ev = Evidence(orders=orders, entry_trades=trades, events=[], signals=[], rejects=[],
                      state=State(position=pos), written=[], window_target_sec=1.0, qty_step=STEP)
        v = verify(ev, ident, ident)
        assert any("holds 0.00300 but resting stops cover 0.00298" in b for b in v.violations) is uncovered, \
            v.violations
