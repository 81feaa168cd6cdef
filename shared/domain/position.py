"""The state document: the position, its three exit legs, the last closed trade, cooldown and lock.

Versioned (`schema`) and migrated on load; `version` grows on every write (optimistic concurrency).
"""
from __future__ import annotations

from decimal import Decimal
from enum import StrEnum
from typing import Any, Literal

import msgspec

from shared.domain.day_tally import DayTally

SCHEMA = 1

Side = Literal["long", "short"]


class Phase(StrEnum):
    """The position's phases (the state document's `status`); a StrEnum, so the JSON and older documents keep the
    same strings. Changes go through the named transitions of shared/domain/transitions.py."""
    PENDING = "PENDING"          # entry intent recorded (client id fixed), order may or may not be on the exchange yet
    OPEN = "OPEN"                # entry order acknowledged by the exchange
    OPEN_FILLED = "OPEN_FILLED"  # entry filled: handed over (ENTRY_FILLED), exits owned by exit_manager
    CLOSING = "CLOSING"          # a flatten is under way; cleanup of siblings before the slot is freed


class LegStatus(StrEnum):
    """An exit leg's status."""
    NEW = "NEW"                  # planned, nothing on the exchange (or the last attempt is over and the rest unprotected)
    PLACED = "PLACED"            # orders resting
    REPLACING = "REPLACING"      # a stop move is under way (old orders being cancelled, new ids fixed)
    DONE = "DONE"                # nothing left of this leg on the exchange


Status = Phase
LIVE_STATUSES: tuple[Phase, ...] = (Phase.PENDING, Phase.OPEN, Phase.OPEN_FILLED, Phase.CLOSING)
ENGINE_PHASES: tuple[Phase, ...] = (Phase.PENDING, Phase.OPEN)
EXIT_PHASES: tuple[Phase, ...] = (Phase.OPEN_FILLED, Phase.CLOSING)

LegName = Literal["tp1", "tp2", "trail"]


class Leg(msgspec.Struct, kw_only=True):
    """One exit leg. tp1/tp2 rest as an OCO (take-profit + stop for the leg's quantity); trail is a stop alone."""
    name: LegName
    qty: Decimal
    tp_price: Decimal | None = None
    stop_price: Decimal
    stop_limit: Decimal
    attempt: int = 0
    status: LegStatus = LegStatus.NEW
    list_client_id: str = ""
    tp_client_id: str = ""
    stop_client_id: str = ""
    filled_qty: Decimal = Decimal(0)
    filled_quote: Decimal = Decimal(0)
    exit_reason: str = ""          # tp | stop | manual | flatten
    placed_at: float = 0.0
    errors: int = 0
    counted_attempt: int = -1      # the attempt whose fills are already in filled_qty
    stop_lost_at: float = 0.0      # stack time the exchange expired the leg's stop (0: it has one, or never lost it)
    stop_lost_refusals: int = 0    # refused re-placements since then (exit_decide.stop_lost_refused)


class Position(msgspec.Struct, kw_only=True):
    """The one live position."""
    trade_key: str
    signal_key: str
    symbol: str
    side: Side
    status: Phase
    entry_mode: str
    entry_price: Decimal
    qty: Decimal
    sl: Decimal
    tp1: Decimal
    tp2: Decimal
    r: Decimal
    signal_price: Decimal
    signal_ts: float
    created_at: float
    entry_client_id: str
    k_entry: Decimal = Decimal(1)   # SYMBOL / feed price ratio the plan was made with (trailing re-prices by it)
    entry_attempt: int = 0
    entry_order_id: int = 0
    entry_sent_at: float = 0.0     # wall time the current entry attempt was (about to be) sent
    counted_client_id: str = ""    # the entry attempt whose fills are already in filled_qty
    entry_fee_base: Decimal = Decimal(0)   # commission taken from the bought asset: not ours to sell
    filled_qty: Decimal = Decimal(0)
    filled_quote: Decimal = Decimal(0)
    avg_entry: Decimal = Decimal(0)        # the average fill to a hundredth of a tick (reports, the hand-over)
    avg_fill: Decimal = Decimal(0)         # the exact average fill, filled_quote / filled_qty (break-even rounds
                                           # it once); 0 in documents written before it existed
    filled_at: float = 0.0
    legs: list[Leg] = []
    be_done: bool = False
    be_attempts: int = 0
    be_next_at: float = 0.0
    trailing: bool = False
    trail_last_at: float = 0.0
    exits_tries: int = 0
    exits_next_at: float = 0.0
    exits_first_error_at: float = 0.0      # exit_manager: market time of the first refused leg (failsafe grace)
    exit_qty: Decimal = Decimal(0)         # exit_manager: what the exits close in total (a short's is grossed up
                                           # for the base-asset commission of its buys); 0 = not planned yet
    close_reason: str = ""
    flatten_attempt: int = 0
    flatten_qty: Decimal = Decimal(0)
    flatten_quote: Decimal = Decimal(0)
    flatten_requested: str = ""    # why a flatten was asked for (failsafe, operator, stop_immediate, gap)
    margin_borrowed: Decimal = Decimal(0)
    margin_borrow_asset: str = ""
    margin_borrow_tran_id: int = 0         # position_engine: the manual borrow's transaction (-1: confirmed by the account)
    margin_debt_before: Decimal = Decimal(0)  # position_engine: the asset's debt before the manual borrow
    entry_cancel_requested: bool = False   # position_engine: the operator cancelled the entry (no Plan B, no re-send)
    adopted: bool = False                  # position_engine: found on the exchange by start-up reconcile, not from a signal
    dust_in: Decimal = Decimal(0)          # exit_manager (spot long): ledger dust the last leg carries (issue 22 §4)
    dust_checked: bool = False             # exit_manager (spot long): the carry was decided, once the legs rested
    wallet_base0: Decimal | None = None    # exit_manager (margin): the wallet's base net less the trade's counted
                                           # exits, read once the legs rest (see shared/domain/holdings.py)


def net_qty(p: Position) -> Decimal:
    """What the position really holds: the filled quantity less the commission taken in that asset."""
    return p.filled_qty - p.entry_fee_base


class ClosedTrade(msgspec.Struct, kw_only=True):
    """What remains of a position once closed: enough for reports and I13."""
    trade_key: str
    symbol: str
    side: Side
    qty: Decimal
    avg_entry: Decimal
    avg_exit: Decimal
    pnl_quote: Decimal
    r_multiple: Decimal
    exit_reason: str
    entry_fee_base: Decimal = Decimal(0)
    opened_at: float
    closed_at: float
    legs: list[Leg] = []
    dust_in: Decimal = Decimal(0)      # ledger dust its last leg carried
    dust_delta: Decimal = Decimal(0)   # what it changed the dust ledger by (negative: it sold carried dust)


class State(msgspec.Struct, kw_only=True):
    """The single state document in `{prefix}state`."""
    schema: int = SCHEMA
    version: int = 0
    position: Position | None = None
    last_closed: ClosedTrade | None = None
    closed_count: int = 0
    day: DayTally = msgspec.field(default_factory=DayTally)   # issue 22: the loss limits' tally and latch
    dust: Decimal = Decimal(0)   # issue 22 §4: the product's own leftover base (0 in older documents)
    cooldown_until: float = 0.0
    lock_until: float = 0.0
    halt: dict[str, Any] | None = None   # copy of `{prefix}halt` (who, why, when): restored with the snapshot
    updated_at: float = 0.0
    updated_by: str = ""


_encoder = msgspec.json.Encoder(decimal_format="string")


def encode_state(state: State) -> bytes:
    """JSON bytes of the state (Decimals as strings)."""
    return _encoder.encode(state)


def decode_state(raw: bytes) -> State:
    """Load a state document of any known schema, migrating old ones (never rejecting them)."""
    doc = msgspec.json.decode(raw)
    if not isinstance(doc, dict):
        raise ValueError("state document is not a JSON object")
    doc = migrate(doc)
    return msgspec.convert(doc, State, strict=False)


def migrate(doc: dict) -> dict:
    """Bring an older state document to SCHEMA. Schema 0 is the original product's layout."""
    if doc.get("schema", 0) == 0:
        # The original kept `position` with the same status names and no version; legs were flat
        # order ids, which cannot be trusted without the exchange: keep the position, drop unknown keys.
        doc = {k: v for k, v in doc.items() if k in State.__struct_fields__}
        doc["schema"] = SCHEMA
        doc.setdefault("version", 0)
    return doc
