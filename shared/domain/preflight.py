"""`executorctl preflight` rules (issue 22): is this account ready to trade, and if not, why. Pure: each function
takes facts already read (exchange answers, Redis, files) and returns checks with OK / WARN / FAIL and the fix."""
from __future__ import annotations

from decimal import Decimal
from typing import Any, Literal

import msgspec

from shared.domain.dust import fee_case
from shared.domain.risk_math import floor_to_step

Verdict = Literal["OK", "WARN", "FAIL"]
ZERO = Decimal(0)
NEEDED_ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS_LIMIT")
# Binance margin changelog 2026-04-23 (effective 2026-05-07): POST /sapi/v1/margin/order and .../order/oco cost
# 1500 UID weight with sideEffectType MARGIN_BUY or AUTO_BORROW_REPAY, 6 otherwise.
AUTO_BORROW_ORDER_WEIGHT, PLAIN_MARGIN_ORDER_WEIGHT = 1500, 6


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """One line of the preflight: what was checked, the verdict, what was seen and how to fix it."""
    name: str
    verdict: Verdict
    detail: str
    fix: str = ""


def ok(name: str, detail: str) -> Check:
    return Check(name=name, verdict="OK", detail=detail)


def warn(name: str, detail: str, fix: str) -> Check:
    return Check(name=name, verdict="WARN", detail=detail, fix=fix)


def fail(name: str, detail: str, fix: str) -> Check:
    return Check(name=name, verdict="FAIL", detail=detail, fix=fix)


def ready(checks: list[Check]) -> bool:
    """Ready to trade: no FAIL (WARNs are worth reading, not blocking)."""
    return all(c.verdict != "FAIL" for c in checks)


def clock_drift(drift_ms: int, recv_window: int) -> Check:
    """Local clock against the server's: a signed request older than RECV_WINDOW is refused (-1021)."""
    if abs(drift_ms) >= recv_window:
        return fail("clock", f"local clock is {drift_ms} ms off the server's, RECV_WINDOW={recv_window}",
                    "sync the host clock (chrony/ntpd); raising RECV_WINDOW only hides it")
    if abs(drift_ms) >= recv_window // 2:
        return warn("clock", f"local clock is {drift_ms} ms off the server's (RECV_WINDOW={recv_window})",
                    "sync the host clock (chrony/ntpd)")
    return ok("clock", f"drift {drift_ms} ms, under RECV_WINDOW={recv_window}")


def api_key(r: dict[str, Any], trade_mode: str) -> list[Check]:
    """GET /sapi/v1/account/apiRestrictions: a trading key never withdraws, trades the mode, is IP-restricted."""
    out = []
    if r.get("enableWithdrawals"):
        out.append(fail("key.withdrawals", "the API key can withdraw",
                        "edit the key on Binance: untick 'Enable Withdrawals' (a trading key must not withdraw)"))
    else:
        out.append(ok("key.withdrawals", "withdrawals disabled"))
    if not r.get("enableSpotAndMarginTrading"):
        out.append(fail("key.trading", "spot & margin trading not enabled for the key",
                        "edit the key on Binance: tick 'Enable Spot & Margin Trading'"))
    elif trade_mode == "margin" and not r.get("enableMargin"):
        out.append(fail("key.trading", "TRADE_MODE=margin but the key has margin disabled",
                        "edit the key on Binance: tick 'Enable Margin Loan, Repay & Transfer'"))
    else:
        out.append(ok("key.trading", f"key may trade {trade_mode}"))
    if not r.get("ipRestrict"):
        out.append(warn("key.ip", "the key works from any IP address",
                        "restrict the key to this host's IP on Binance (API management)"))
    else:
        out.append(ok("key.ip", "restricted to trusted IPs"))
    return out


def account(can_trade: bool, rates: dict[str, Decimal], bnb_burn: bool, bnb_free: Decimal) -> list[Check]:
    """canTrade, the commission rates and who pays the fees (BNB or the traded assets)."""
    out = [ok("account.can_trade", "canTrade true") if can_trade else
           fail("account.can_trade", "the account may not trade (canTrade false)",
                "check the account on Binance (verification, restrictions) before going live")]
    rate_text = ", ".join(f"{k} {v}" for k, v in sorted(rates.items()) if k in ("maker", "taker")) or "not reported"
    out.append(ok("account.commission", f"commission rates: {rate_text}"))
    if bnb_burn and bnb_free <= 0:
        out.append(warn("account.fees", "BNB fee burn is on but the account holds no BNB: fees are taken from the "
                        "traded asset", "buy a little BNB, or turn BNB burn off to make it explicit"))
    elif bnb_burn:
        out.append(ok("account.fees", f"BNB free {bnb_free}: {fee_case(False, 'the base', 'BNB')}"))
    else:
        out.append(ok("account.fees", f"BNB burn off: {fee_case(True, 'the base')} (the dust below)"))
    return out


def spot_balance(free_quote: Decimal, quote: str, qty_usd: Decimal, fee_rate: Decimal) -> Check:
    """Spot: the free quote pays QTY_USD plus the entry's commission."""
    need = qty_usd * (1 + fee_rate)
    if free_quote < need:
        return fail("balance", f"{free_quote} {quote} free, an entry needs {need:.2f}",
                    f"deposit {quote} or lower QTY_USD")
    return ok("balance", f"{free_quote} {quote} free, an entry needs {need:.2f}")


def margin_balance(level: Decimal | None, long_capacity: Decimal, short_capacity: Decimal, quote: str,
                   qty_usd: Decimal, fee_rate: Decimal) -> list[Check]:
    """Margin: the margin level, and whether a long (free + borrowable quote) and a short (borrowable base at the
    bid, in quote) can each be QTY_USD plus fees."""
    need = qty_usd * (1 + fee_rate)
    out = []
    if level is not None and level < Decimal(2):
        out.append(warn("margin.level", f"margin level {level}", "add collateral: below 2 new loans are at risk"))
    else:
        out.append(ok("margin.level", f"margin level {level if level is not None else 'n/a'}"))
    for side, cap in (("long", long_capacity), ("short", short_capacity)):
        if cap < need:
            out.append(fail(f"margin.{side}", f"a {side} can use {cap:.2f} {quote}, an entry needs {need:.2f}",
                            "transfer collateral to the margin account or lower QTY_USD"))
        else:
            out.append(ok(f"margin.{side}", f"a {side} can use {cap:.2f} {quote} (needs {need:.2f})"))
    return out


def symbol(sym: dict[str, Any], filters: dict[str, Decimal], configured: dict[str, Decimal], trade_mode: str,
           entry_mode: str) -> list[Check]:
    """SYMBOL: TRADING, filters equal to the settings that are set, the order types needed, margin if margin."""
    name = sym.get("symbol", "?")
    out = [ok("symbol.status", f"{name} TRADING") if sym.get("status") == "TRADING" else
           fail("symbol.status", f"{name} status {sym.get('status')}", "wait until Binance lists it TRADING again")]
    wrong = [f"{k}={v} (exchange {filters.get(k)})" for k, v in configured.items() if filters.get(k) != v]
    out.append(fail("symbol.filters", "settings disagree with exchangeInfo: " + ", ".join(wrong),
                    "unset them (the exchange's filters are used) or set them to the exchange's values")
               if wrong else ok("symbol.filters", ", ".join(f"{k} {v}" for k, v in filters.items())))
    types = set(sym.get("orderTypes", []))
    needed = [t for t in NEEDED_ORDER_TYPES if t != "MARKET" or entry_mode != "LIMIT_ONLY"]
    missing = [t for t in needed if t not in types] + ([] if sym.get("ocoAllowed") else ["OCO"])
    out.append(fail("symbol.order_types", f"{name} does not allow {', '.join(missing)}",
                    "choose a SYMBOL that allows them") if missing else
               ok("symbol.order_types", f"{', '.join(needed)} and OCO allowed"))
    if trade_mode == "margin":
        out.append(ok("symbol.margin", "margin trading allowed") if sym.get("isMarginTradingAllowed") else
                   fail("symbol.margin", f"{name} is not tradable on margin", "use TRADE_MODE=spot or another SYMBOL"))
    return out


def foreign(unknown_orders: list[str], debts: dict[str, Decimal], base_held: Decimal, base: str, price: Decimal,
            min_notional: Decimal, has_position: bool) -> list[Check]:
    """Nothing on SYMBOL the state does not know: an operator's order or position would be sold by a flatten."""
    out = [fail("foreign.orders", f"open orders the state does not know: {', '.join(unknown_orders[:5])}",
                "cancel them on Binance, or let the executor adopt its own by restarting position_engine")
           if unknown_orders else ok("foreign.orders", "no open order on SYMBOL that the state does not know")]
    owed = {a: d for a, d in debts.items() if d > 0}
    if owed and not has_position:
        out.append(fail("foreign.position", "margin debt with no position in the state: "
                        + ", ".join(f"{d} {a}" for a, d in owed.items()), "repay it (or close that position) first"))
    elif not has_position and base_held * price >= max(min_notional, Decimal(1)):
        out.append(warn("foreign.position", f"{base_held} {base} held with no position in the state",
                        "the executor never sells what it did not buy; move it elsewhere to keep the books clear"))
    else:
        out.append(ok("foreign.position", "no position the state does not know"))
    return out


def stack(missing_heartbeats: list[str], persistence: str, feed: str, feed_age: float | None, stale_sec: int,
          deltascout_ok: bool, deltascout_path: str) -> list[Check]:
    """The stack: heartbeats, Redis persistence, a fresh AGG_CSV (v2 header), a readable DELTASCOUT_LOG."""
    out = [fail("stack.heartbeats", f"no heartbeat from {', '.join(missing_heartbeats)}",
                "start the stack (make up / supervisord) and check those processes' logs")
           if missing_heartbeats else ok("stack.heartbeats", "every process beats")]
    out.append({"aof": ok("stack.redis", "Redis persistence on (AOF)"),
                "rdb": warn("stack.redis", "Redis persists by RDB snapshots only",
                            "turn AOF on (appendonly yes): a crash loses the writes since the last snapshot"),
                "unknown": warn("stack.redis", "cannot tell whether Redis persists (CONFIG not allowed)",
                                "check redis.conf: appendonly yes")}.get(persistence) or
               fail("stack.redis", "Redis has no persistence: a restart loses the state and the streams",
                    "run redis-server with appendonly yes"))
    if feed:
        out.append(fail("stack.feed", feed, "point AGG_CSV at the aggregator's aggregated.csv (v2 header)"))
    elif feed_age is None or feed_age > stale_sec:
        age = "no row" if feed_age is None else f"last row {int(feed_age)} s old"
        out.append(fail("stack.feed", f"AGG_CSV is stale ({age}, limit INVAR_FEED_STALE_SEC={stale_sec})",
                        "start or fix the aggregator: a stale feed makes wrong stops"))
    else:
        out.append(ok("stack.feed", f"AGG_CSV fresh (last row {int(feed_age)} s old)"))
    out.append(ok("stack.signals", f"DELTASCOUT_LOG readable: {deltascout_path}") if deltascout_ok else
               fail("stack.signals", f"DELTASCOUT_LOG not readable: {deltascout_path}",
                    "point DELTASCOUT_LOG at DeltaScout's log and give this user read access"))
    return out


def plan(price: Decimal, qty_usd: Decimal, sl_pct: Decimal, tp_r: tuple[Decimal, ...], step: Decimal,
         fee_rate: Decimal, base_commission: bool, base: str, quote: str) -> Check:
    """With today's price and the settings: R in quote, the round trip's fees in R, the dust a spot trade leaves."""
    qty = floor_to_step(qty_usd / price, step)
    if qty <= 0:
        return fail("plan", f"QTY_USD={qty_usd} buys less than one step ({step} {base}) at {price}",
                    "raise QTY_USD")
    r_quote = qty * price * sl_pct
    fees = 2 * fee_rate * qty * price
    fees_r = fees / r_quote
    net = qty - qty * fee_rate if base_commission else qty
    dust = net - floor_to_step(net, step)
    text = (f"{qty} {base} at {price:.2f}: R = {r_quote:.2f} {quote}, TP1 {tp_r[0]} R = {r_quote * tp_r[0]:.2f}, "
            f"round-trip fees {fees:.2f} {quote} = {fees_r:.2f} R, dust left {dust:.8f} {base} "
            f"(~{dust * price:.2f} {quote}) per trade"
            + (", carried in the dust ledger" if base_commission else f" ({fee_case(False, base)})"))
    if fees_r >= tp_r[0]:
        return warn("plan", text, "the fees eat TP1: raise SL_PCT or TP_R_LIST, or set SKIP_TP1_BELOW_FEES=1")
    return ok("plan", text)


def borrow_weight(trade_mode: str, borrow_mode: str, side_effect: str) -> Check | None:
    """MARGIN_BORROW_MODE=auto: each order with MARGIN_BUY / AUTO_BORROW_REPAY costs 1500 request weight."""
    if trade_mode != "margin" or borrow_mode != "auto":
        return None
    return warn("margin.weight", f"MARGIN_BORROW_MODE=auto sends {side_effect} orders: {AUTO_BORROW_ORDER_WEIGHT} "
                f"UID weight each (Binance, since 2026-05-07) against {PLAIN_MARGIN_ORDER_WEIGHT} with an explicit "
                f"borrow + NO_SIDE_EFFECT", "use MARGIN_BORROW_MODE=manual")


def loss_limits(rows: list[tuple[str, str, str]], latched: str, halt: dict[str, Any] | None) -> Check:
    """The loss limits and how far the day is from each; a latched limit or a halt is a WARN (no new entries)."""
    text = "; ".join(f"{s} {lim} ({now})" for s, lim, now in rows)
    if latched:
        return warn("loss_limits", f"LATCHED: {latched}. {text}", "review, then `executorctl resume`")
    if halt:
        return warn("loss_limits", f"entries halted by {halt.get('by', '?')}: {halt.get('reason', '')}. {text}",
                    "`executorctl resume` when ready")
    return ok("loss_limits", text)
