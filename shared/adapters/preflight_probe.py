"""The preflight's reads (issue 22): the exchange, Redis and the files, read-only, turned into checks by the pure
rules of shared/domain/preflight.py. Used by `executorctl preflight` and by LIVE_VALIDATE_ONLY=1 at
position_engine's start-up."""
from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping
from decimal import Decimal
from typing import Any, TypeVar

import redis

from shared.adapters.agg_feed import read_last_bars
from shared.adapters.binance_rest import BinanceClient, BinanceError, Rejected
from shared.config import Config
from shared.domain import preflight as PF
from shared.domain.loss_limits import LossLimits, headroom
from shared.domain.order_ids import trade_key_of
from shared.domain.position import State, decode_state, net_qty
from shared.domain.symbol import SymbolFilters

T = TypeVar("T")
FILTER_SETTINGS = ("TICK_SIZE", "QTY_STEP", "MIN_QTY", "MIN_NOTIONAL")
_AUTH_CODES = {-2014, -2015, -1022, -2008}   # bad key format, invalid key/IP/permissions, bad signature


class Probe:
    """Runs every check once; `checks` collects them in order."""

    def __init__(self, cfg: Config, r: redis.Redis, client: BinanceClient, now: Callable[[], float],
                 env: Mapping[str, str] | None = None, stack: bool = True) -> None:
        self.cfg, self.r, self.client, self.now = cfg, r, client, now
        self.env = os.environ if env is None else env
        self.stack = stack
        self.checks: list[PF.Check] = []

    def _try(self, name: str, fn: Callable[[], T], fix: str) -> T | None:
        """`fn()`, or None with a FAIL naming what could not be read."""
        try:
            return fn()
        except (BinanceError, KeyError, IndexError, ValueError, TypeError) as e:
            self.checks.append(PF.fail(name, f"{type(e).__name__}: {e}"[:300], fix))
            return None

    def run(self) -> list[PF.Check]:
        """All checks: exchange and key, account, symbol, foreign orders, stack, plan, loss limits."""
        if self._exchange():
            self._account_and_symbol()
        self._stack()
        self._loss_limits()
        return self.checks

    # ---- exchange, key -------------------------------------------------------------------------------------

    def _exchange(self) -> bool:
        cfg = self.cfg
        try:
            t0 = time.time() * 1000
            server = self.client.server_time()
            t1 = time.time() * 1000
        except BinanceError as e:
            self.checks.append(PF.fail("exchange", f"{cfg.BINANCE_BASE_URL} unreachable: {e}"[:300],
                                       "check BINANCE_BASE_URL (or BINANCE_ENV) and the network"))
            return False
        self.checks.append(PF.ok("exchange", f"{cfg.BINANCE_BASE_URL} reachable"))
        self.checks.append(PF.clock_drift(int((t0 + t1) / 2 - server), cfg.RECV_WINDOW))
        self.client.time_offset_ms = int(server - (t0 + t1) / 2)   # the signed reads below sign with it
        try:
            self.account_doc = self.client.get_json("/api/v3/account", {"omitZeroBalances": "false"}, signed=True)
        except Rejected as e:
            why = "key or signature refused" if e.code in _AUTH_CODES else "signed request refused"
            self.checks.append(PF.fail("key.signature", f"{why}: {e.code} {e}"[:300],
                                       "check BINANCE_API_KEY / BINANCE_API_SECRET, and the key's IP whitelist"))
            return False
        except BinanceError as e:   # unreachable, unknown outcome, rate limited
            self.checks.append(PF.fail("key.signature", f"signed request failed: {e}"[:300], "retry; check the network"))
            return False
        self.checks.append(PF.ok("key.signature", "signed request accepted"))
        restr = self._try("key.restrictions", lambda: self.client.get_json("/sapi/v1/account/apiRestrictions",
                                                                             signed=True),
                          "the key needs 'Enable Reading'; check it on Binance")
        if restr is not None:
            self.checks.extend(PF.api_key(restr, cfg.TRADE_MODE))
        return True

    # ---- account, symbol, foreign, plan ---------------------------------------------------------------------

    def _account_and_symbol(self) -> None:
        cfg, acc = self.cfg, self.account_doc
        balances = {b["asset"]: (Decimal(b["free"]), Decimal(b["locked"])) for b in acc.get("balances", [])}
        rates = {k: Decimal(str(v)) for k, v in (acc.get("commissionRates") or {}).items()}
        burn = self._try("account.fees", lambda: self.client.get_json("/sapi/v1/bnbBurn", signed=True),
                         "the key needs 'Enable Reading'")
        bnb_burn = bool(burn and burn.get("spotBNBBurn"))
        bnb_free = balances.get("BNB", (Decimal(0), Decimal(0)))[0]
        can_trade = bool(acc.get("canTrade"))
        margin_doc = None
        if cfg.TRADE_MODE == "margin":
            margin_doc = self._try("margin.account", self._margin_doc, "open the margin account on Binance")
            can_trade = bool(margin_doc and margin_doc.get("tradeEnabled"))
        self.checks.extend(PF.account(can_trade, rates, bnb_burn, bnb_free))
        sym = self._try("symbol.status", lambda: self.client.get_json("/api/v3/exchangeInfo",
                                                                        {"symbol": cfg.SYMBOL})["symbols"][0],
                        "check SYMBOL")
        filters = self._try("symbol.filters", lambda: self.client.exchange_info(cfg.SYMBOL), "check SYMBOL")
        book = self._try("book", lambda: self.client.book_ticker(cfg.SYMBOL), "check SYMBOL and the exchange")
        if sym is None or filters is None or book is None:
            return
        self.checks.extend(PF.symbol(sym, _filter_values(filters), self._configured_filters(), cfg.TRADE_MODE,
                                     cfg.ENTRY_MODE))
        fee_rate = rates.get("taker") or cfg.EXIT_FEE_RATE_FALLBACK
        self._balance(balances, margin_doc, filters, book, fee_rate)
        self._foreign(balances, filters, book)
        self.checks.append(PF.plan((book[0] + book[1]) / 2, cfg.QTY_USD, cfg.SL_PCT, cfg.TP_R_LIST,
                                   filters.step_size, fee_rate, cfg.TRADE_MODE == "spot" and not
                                   (bnb_burn and bnb_free > 0), filters.base_asset, filters.quote_asset))
        weight = PF.borrow_weight(cfg.TRADE_MODE, cfg.MARGIN_BORROW_MODE, cfg.MARGIN_SIDE_EFFECT)
        if weight is not None:
            self.checks.append(weight)

    def _margin_doc(self) -> dict[str, Any]:
        if self.cfg.MARGIN_ISOLATED:
            doc = self.client.get_json("/sapi/v1/margin/isolated/account", {"symbols": self.cfg.SYMBOL}, signed=True)
            return doc["assets"][0]
        return self.client.get_json("/sapi/v1/margin/account", signed=True)

    def _configured_filters(self) -> dict[str, Decimal]:
        """The filter settings the operator set (unset ones take the exchange's values)."""
        return {n: getattr(self.cfg, n) for n in FILTER_SETTINGS if self.env.get(n, "").strip()}

    def _balance(self, balances: dict, margin_doc: dict | None, f: SymbolFilters, book: tuple, fee_rate: Decimal):
        cfg = self.cfg
        if cfg.TRADE_MODE == "spot":
            free = balances.get(f.quote_asset, (Decimal(0), Decimal(0)))[0]
            self.checks.append(PF.spot_balance(free, f.quote_asset, cfg.QTY_USD, fee_rate))
            return
        iso = cfg.SYMBOL if cfg.MARGIN_ISOLATED else None
        wallet = self._try("margin.balance", lambda: self.client.margin_wallet(cfg.SYMBOL), "check the margin account")
        quote_b = self._try("margin.long", lambda: self.client.max_borrowable(f.quote_asset, iso), "check margin")
        base_b = self._try("margin.short", lambda: self.client.max_borrowable(f.base_asset, iso), "check margin")
        if wallet is None or quote_b is None or base_b is None:
            return
        free_q = wallet[f.quote_asset].free if f.quote_asset in wallet else Decimal(0)
        level_raw = (margin_doc or {}).get("marginLevel")
        level = Decimal(str(level_raw)) if level_raw not in (None, "") else None
        self.checks.extend(PF.margin_balance(level, free_q + quote_b, base_b * book[0], f.quote_asset, cfg.QTY_USD,
                                             fee_rate))

    def _foreign(self, balances: dict, f: SymbolFilters, book: tuple) -> None:
        st = self._state()
        pos = st.position
        opened = self._try("foreign.orders", lambda: self.client.open_orders(self.cfg.SYMBOL), "check the exchange")
        if opened is None:
            return
        unknown = [o.client_order_id for o in opened
                   if pos is None or trade_key_of(o.client_order_id) != pos.trade_key]
        debts: dict[str, Decimal] = {}
        if self.cfg.TRADE_MODE == "margin":
            debts = self._try("foreign.position", lambda: self.client.margin_debts(self.cfg.SYMBOL),
                              "check the margin account") or {}
        free, locked = balances.get(f.base_asset, (Decimal(0), Decimal(0)))
        # the dust ledger's coins are the product's own (issue 22 §4): not foreign
        held = free + locked - (net_qty(pos) if pos is not None else Decimal(0)) - st.dust
        self.checks.extend(PF.foreign(unknown, debts, held, f.base_asset, book[0], f.min_notional,
                                      pos is not None))

    # ---- the stack, loss limits -----------------------------------------------------------------------------

    def _stack(self) -> None:
        cfg = self.cfg
        names = list(dict.fromkeys([*cfg.WATCHDOG_PROCESSES, "watchdog"]))
        missing = [n for n in names if not self.r.exists(cfg.key(f"hb:{n}"))] if self.stack else []
        feed_error, age = self._feed()
        readable = os.path.isfile(cfg.DELTASCOUT_LOG) and os.access(cfg.DELTASCOUT_LOG, os.R_OK)
        checks = PF.stack(missing, self._persistence(), feed_error, age, cfg.INVAR_FEED_STALE_SEC, readable,
                          cfg.DELTASCOUT_LOG)
        if not self.stack:   # LIVE_VALIDATE_ONLY: the stack is not up yet
            checks[0] = PF.warn("stack.heartbeats", "not checked (LIVE_VALIDATE_ONLY runs before the stack)",
                                "run `executorctl preflight` once the stack is up")
        self.checks.extend(checks)

    def _persistence(self) -> str:
        try:
            if int(self.r.info("persistence").get("aof_enabled", 0)) == 1:
                return "aof"
            save = self.r.config_get("save").get("save", "")
        except redis.ResponseError:   # an ACL user without CONFIG
            return "unknown"
        return "rdb" if str(save).strip() else "none"

    def _feed(self) -> tuple[str, float | None]:
        """('', age of the last row) or (what is wrong with AGG_CSV, None)."""
        try:
            got = read_last_bars(self.cfg.AGG_CSV, 1)
        except Exception as e:  # noqa: BLE001 - BadHeader / FeedUnavailable / OSError: each is the FAIL's text
            return f"AGG_CSV {self.cfg.AGG_CSV}: {e}"[:300], None
        if not got.bars:
            return "", None
        return "", self.now() - got.bars[-1].ts

    def _state(self) -> State:
        raw = self.r.get(self.cfg.key("state"))
        return decode_state(raw) if raw else State()

    def _loss_limits(self) -> None:
        st = self._state()
        raw = self.r.get(self.cfg.key("halt"))
        halt = json.loads(raw) if raw else None
        rows = headroom(st.day, LossLimits.of(self.cfg), self.now())
        self.checks.append(PF.loss_limits(rows, st.day.latched, halt))


def _filter_values(f: SymbolFilters) -> dict[str, Decimal]:
    return {"TICK_SIZE": f.tick_size, "QTY_STEP": f.step_size, "MIN_QTY": f.min_qty, "MIN_NOTIONAL": f.min_notional}


def run_preflight(cfg: Config, r: redis.Redis, client: BinanceClient, now: Callable[[], float],
                  stack: bool = True) -> list[PF.Check]:
    """Every check, read-only."""
    return Probe(cfg, r, client, now, stack=stack).run()


def render_lines(checks: list[PF.Check]) -> list[str]:
    """One line per check (and its fix under a WARN or FAIL), then the verdict."""
    out = []
    for c in checks:
        out.append(f"{c.verdict:<4}  {c.name:<20} {c.detail}")
        if c.fix:
            out.append(f"{'':<4}  {'':<20} fix: {c.fix}")
    fails = sum(1 for c in checks if c.verdict == "FAIL")
    out.append("READY: no FAIL" if not fails else f"NOT READY: {fails} FAIL")
    return out
