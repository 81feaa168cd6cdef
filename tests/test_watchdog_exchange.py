"""The watchdog's real exchange provider (BinanceSnapshotProvider over the shared BinanceClient) against the
real paper exchange: a resting stop protects the position; once cancelled, I1 goes CRITICAL."""
from __future__ import annotations

import io
from decimal import Decimal as D

import pytest
import redis

from shared.clock import ReplayClock
from shared.config import load_config
from shared.domain.invariants import split_symbol
from shared.domain.position import State, encode_state
from shared.jsonlog import JsonLogger
from services.watchdog.service import Watchdog
from services.watchdog.snapshot import BinanceSnapshotProvider
from tests.pe_helpers import SYMBOL, pe  # noqa: F401  (pytest fixture: a real paper exchange)
from tests.test_invariants import NOW, TK, position
from tests.wd_helpers import redis_server


def test_real_provider_sees_stops_on_paper_exchange(pe, tmp_path):  # noqa: F811
    client = pe.client()
    last = pe.last()
    pos = position(symbol=SYMBOL)
    qty = D("0.001")
    for leg in pos.legs:
        leg.qty = qty
        leg.stop_price = (last * D("0.98")).quantize(D("0.01"))
        leg.stop_limit = leg.stop_price - D("1")
        client.place_order(SYMBOL, "SELL", "STOP_LOSS_LIMIT", qty, client_order_id=leg.stop_client_id,
                           price=leg.stop_limit, stop_price=leg.stop_price, time_in_force="GTC")
    pos.filled_qty = qty * 3
    prov = BinanceSnapshotProvider(client, SYMBOL, split_symbol(SYMBOL), None)
    seen = {o.client_order_id: o for o in prov.open_orders()}
    assert {leg.stop_client_id for leg in pos.legs} <= set(seen)
    o = seen[pos.legs[0].stop_client_id]
    assert o.type == "STOP_LOSS_LIMIT" and o.side == "SELL" and o.qty == qty and o.stop_price == pos.legs[0].stop_price

    with redis_server() as url:
        r = redis.Redis.from_url(url)
        cfg = load_config({"REDIS_URL": url, "EXEC_PREFIX": "t:", "CLOCK": "replay", "AGG_CSV": "",
                           "BINANCE_BASE_URL": "http://127.0.0.1:9"})
        r.set("t:clock", int(NOW * 1000))
        raw = encode_state(State(position=pos))
        r.set("t:state", raw)
        wd = Watchdog(r, cfg, ReplayClock(r, "t:clock"), prov, processes=[], log=JsonLogger("watchdog", io.StringIO()))
        assert not [f for f in wd.invariant_tick().findings if f.check == "I1"]
        client.cancel_order(SYMBOL, client_order_id=pos.legs[2].stop_client_id)
        r.set("t:clock", int((NOW + 20) * 1000))
        i1 = [f for f in wd.invariant_tick().findings if f.check == "I1"]
        assert [(f.severity, f.trade_key, f.details["legs"]) for f in i1] == [("CRITICAL", TK, ["trail"])]
        assert r.get("t:state") == raw
        # the watchdog only read: the two other stops are still resting
        assert {o.client_order_id for o in prov.open_orders()} >= {pos.legs[0].stop_client_id,
                                                                    pos.legs[1].stop_client_id}
        r.close()


def test_the_watchdogs_exchange_calls_share_the_stacks_back_off(pe, tmp_path):  # noqa: F811
    """The watchdog starts through the one boot path (shared.runtime): its read-only Binance client holds back
    while another process's 429/418 back-off is in force, and calls again once it is over."""
    import time

    from services.watchdog.__main__ import provider_factory
    from shared.adapters.binance_rest import RateLimited
    from shared.adapters.shared_backoff import RedisBackoff
    from shared.runtime import Runtime
    from tests.redis_helpers import user_url

    with redis_server() as url:
        env = {"EXEC_PREFIX": "t:", "CLOCK": "wall", "AGG_CSV": "", "BINANCE_BASE_URL": pe.url, "SYMBOL": SYMBOL,
               "BINANCE_API_KEY": pe.env["PAPER_API_KEY"], "BINANCE_API_SECRET": pe.env["PAPER_API_SECRET"]}
        rt = Runtime(load_config({**env, "REDIS_URL": user_url(url, "watchdog", "t:")}), "watchdog",
                     io.StringIO())
        engine = redis.Redis.from_url(user_url(url, "position_engine", "t:"))
        prov = provider_factory(rt)()
        assert prov.open_orders() == []
        RedisBackoff(engine, "t:backoff").block(time.time() + 30)  # the engine got a 429
        with pytest.raises(RateLimited):
            prov.open_orders()
        RedisBackoff(engine, "t:backoff").block(0)
        engine.delete("t:backoff")
        assert prov.open_orders() == []
        engine.close()
        rt.r.close()
