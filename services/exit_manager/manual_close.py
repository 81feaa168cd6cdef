"""Coins of the position that left the account (a long) or came back to it (a short) outside the executor's
orders: a person closed the trade by hand on the exchange. They are booked as `manual` at the prices of the
account's own trades, the trade's resting orders are resized or cancelled, and nothing is traded twice.

Spot: a long's coins are locked by its legs, so a person has to cancel them first; the re-placement then fails
with -2010 and the spot balance tells what is gone. Margin: a short's buy-back needs no coin of ours and a sell
can borrow, so the wallet's base net is watched on the REST sweep's cadence, and at once when the `orders` stream
reports a trade on the symbol by an order that is not the trade's, against a baseline (see
`shared/domain/holdings.py`), and only what the account's own trades outside our orders prove is booked."""
from __future__ import annotations

import time
from decimal import Decimal

import msgspec

from services.exit_manager.closing import Closer
from services.exit_manager.counting import LegCounter
from services.exit_manager.holdings import base_net, foreign_fills
from services.exit_manager.parts import Part, Parts
from shared.adapters.binance_rest import BinanceError
from shared.domain import transitions as tr
from shared.domain.exit_decide import ExitView
from shared.domain.exit_rules import held_qty, leg_ids, read_attempt
from shared.domain.exit_watch import (
    BookManual,
    GapUnexplained,
    ReadAccount,
    ReadForeignFills,
    ReadUncounted,
    ReadWallet,
    SetWalletBaseline,
    StopResting,
    manual_close,
)
from shared.domain.position import LegStatus, Position

WALLET_WEIGHT = 10  # GET /sapi/v1/margin/account | /sapi/v1/margin/isolated/account (IP weight)


class ManualCloseWatch(Part):
    """Detects and books a manual close; the exit manager calls it before it acts on a tick."""

    def __init__(self, p: Parts, counter: LegCounter, closer: Closer) -> None:
        super().__init__(p)
        self.counter, self.closer = counter, closer
        self._next_check = 0.0          # monotonic: the wallet's next read on the sweep's cadence
        self._unexplained: set[tuple[str, Decimal]] = set()  # (trade, gap) already alerted as not a trade

    # ---- margin: the wallet's base net against the baseline ----------------------------------------------

    def watch(self, pos: Position) -> Position | None:
        """Margin: take the baseline once the legs rest, then compare on the sweep's cadence; the position as it
        is afterwards (None once closed)."""
        if not self.client.margin or pos.flatten_requested:
            return pos
        if any(lg.status not in (LegStatus.PLACED, LegStatus.DONE) for lg in pos.legs) or not pos.legs:
            return pos  # legs being placed or moved: their fills are not all counted yet
        if pos.wallet_base0 is not None and time.monotonic() < self._next_check and not self.feed.foreign_trade:
            return pos
        if not self.feed.budget.take(WALLET_WEIGHT, time.time()):
            return pos
        self._next_check = time.monotonic() + self.cfg.EXIT_REST_SWEEP_SEC
        self.feed.foreign_trade = False
        self.feed.poll_weight += WALLET_WEIGHT
        self.check(pos)
        return self.store.pos()

    def check(self, pos: Position) -> bool:
        """Read the wallet; True when coins were booked as closed by hand. The first read sets the baseline."""
        return self._run(pos, ExitView())

    def _run(self, pos: Position, view: ExitView) -> bool:
        """Ask `exit_watch.manual_close` until it decides: read each input it names, carry out what it decides;
        True when coins were booked as closed by hand."""
        while True:
            acts = manual_close(pos, view, self.fee_rate, self.f, bool(self.client.margin))
            if not acts:
                return False
            a = acts[0]
            if isinstance(a, BookManual):
                self._detected(pos, a.gap, view.foreign_qty, view.foreign_quote)
                self._book_and_close(pos, a.qty, a.quote)
                return True
            if isinstance(a, SetWalletBaseline):
                self._set_baseline(pos, a.net, a.baseline)
                return False
            if isinstance(a, GapUnexplained):
                self._unexplained_gap(pos, a.gap)
                return False
            if isinstance(a, StopResting):
                # measured again now that every fill of ours is counted: only the rest is somebody else's
                pos = self._stop_resting(pos)
                view = msgspec.structs.replace(view, resting_stopped=True, wallet_net=self._net(pos))
                continue
            view = self._read(pos, view, a)
            if view is None:
                return False

    def _read(self, pos: Position, view: ExitView, a: object) -> ExitView | None:
        """The input `a` names, read into the view; None when it cannot be read (nothing is decided then)."""
        rep = msgspec.structs.replace
        if isinstance(a, ReadWallet):
            net = self._net(pos)
            return None if net is None else rep(view, wallet_net=net)
        if isinstance(a, ReadAccount):
            base = self._account_base(pos)
            return None if base is None else rep(view, account_base=base)
        if isinstance(a, ReadUncounted):
            return rep(view, uncounted=self._uncounted(pos))
        if isinstance(a, ReadForeignFills):
            qty, quote = foreign_fills(self.client, self.cfg.SYMBOL, pos, a.qty)
            return rep(view, foreign_qty=qty, foreign_quote=quote)
        raise TypeError(f"not an input of the manual-close watch: {a!r}")

    def _net(self, pos: Position) -> Decimal | None:
        try:
            return base_net(self.client, self.cfg.SYMBOL, self.f.base_asset)
        except BinanceError as e:
            self.rt.log.warning("wallet_unreadable", trade_key=pos.trade_key, error=str(e))
            return None

    def _set_baseline(self, pos: Position, net: Decimal, base: Decimal) -> None:
        self.store.mutate(pos.trade_key, tr.wallet_baseline_set, base)
        self.rt.event("wallet_baseline", pos.trade_key, asset=self.f.base_asset, net=net, baseline=base)

    def _unexplained_gap(self, pos: Position, gap: Decimal) -> None:
        """The wallet moved but no trade of the account outside our orders says so (a transfer, a liquidation):
        nothing is booked, the legs stay, the operator is told once per amount."""
        key = (pos.trade_key, gap)
        if key in self._unexplained:
            return
        self._unexplained.add(key)
        self.rt.event("wallet_gap_unexplained", pos.trade_key, level="error", gap=gap, asset=self.f.base_asset,
                      action="legs kept: no trade of the account outside the executor's orders explains it")
        self.rt.notify("wallet_gap_unexplained", f"{gap} {self.f.base_asset} of the position moved without a trade "
                       "of ours or of the account; the legs are kept", "ERROR", pos.trade_key)

    def _stop_resting(self, pos: Position) -> Position:
        """Cancel the trade's resting orders (sized for coins that are no longer the trade's) and count what they
        filled; their legs go back to NEW, to be placed again for what remains."""
        self.exchange.cancel_all(pos)
        for leg in pos.legs:
            if leg.status != LegStatus.PLACED:
                continue
            orders = {i: self.exchange.query(i) for i in (leg.tp_client_id, leg.stop_client_id) if i}
            fills = read_attempt(leg, {k: v for k, v in orders.items() if v is not None})
            pos = self.counter.settle(pos, leg.name, leg.attempt, fills) or pos
        return self.store.pos() or pos

    # ---- spot (and the -2010 of a margin sell): what the account no longer holds ----------------------------

    def coins_missing(self, pos: Position) -> bool:
        """After -2010: are coins the position holds gone from the account? Then book them as sold by hand (at the
        prices of the account's own trades that are not ours), close what nothing holds any more, and alert.
        Never sells: whoever sold them already did."""
        if self.client.margin:
            self.feed.charge_action(WALLET_WEIGHT)
            return pos.wallet_base0 is not None and self.check(pos)
        return self._run(pos, ExitView())

    def _account_base(self, pos: Position) -> Decimal | None:
        """The spot account's base balance (free + locked); None when it cannot be read."""
        try:
            free, locked = self.client.account().get(self.f.base_asset, (Decimal(0), Decimal(0)))
        except BinanceError as e:
            self.rt.log.warning("account_unreadable", trade_key=pos.trade_key, error=str(e))
            return None
        return free + locked

    def _uncounted(self, pos: Position) -> Decimal:
        """What our orders traded that the legs do not count yet (open or not yet read attempts)."""
        total = Decimal(0)
        for leg in pos.legs:
            for attempt in range(max(leg.counted_attempt + 1, 0), leg.attempt + 1):
                ids = leg_ids(pos.trade_key, leg.name, attempt)
                for cid in (ids.tp_id, ids.stop_id):
                    o = self.exchange.query(cid) if cid and leg.status != LegStatus.DONE else None
                    total += o.executed_qty if o is not None else Decimal(0)
        return total

    # ---- booking ---------------------------------------------------------------------------------------------

    def _detected(self, pos: Position, gap: Decimal, found_qty: Decimal, found_quote: Decimal) -> None:
        self.rt.event("manual_close_detected", pos.trade_key, level="error", missing=gap, found_qty=found_qty,
                      found_quote=found_quote, held=held_qty(pos, self.fee_rate, self.f.step_size), side=pos.side)
        what = "left the account" if pos.side == "long" else "was bought back"
        self.rt.notify("manual_close", f"{gap} {self.f.base_asset} of the position {what} outside the executor's "
                       f"orders; booked as a manual close", "CRITICAL", pos.trade_key)

    def _book_and_close(self, pos: Position, qty: Decimal, quote: Decimal) -> None:
        p = self._book(pos, qty, quote)
        if p is not None and all(lg.status == LegStatus.DONE for lg in p.legs) and not p.flatten_requested:
            self.closer.close(p)

    def _book(self, pos: Position, qty: Decimal, quote: Decimal) -> Position | None:
        """Book `qty` (worth `quote`) as closed by hand on the legs that have no resting orders, trailing leg first."""
        return self.store.mutate(pos.trade_key, tr.manual_close_booked, qty, quote, self.f)
