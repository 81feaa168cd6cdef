"""DeltaScout PEAK lines: strict parsing, validation and the stable dedup key. Pure: no I/O, no clock.

`parse_line(raw, offset=, now=, params=)` turns one log line (bytes, without its newline) into a
`Signal` or a `Reject` with a reason:

    too_long      the line is longer than MAX_LINE_BYTES
    bad_json      not a JSON document (or not UTF-8, or empty)
    schema        JSON, but not an object of the expected shape/types (or kind not long/short)
    not_peak      action != "PEAK"
    wrong_source  source != "DeltaScout" while STRICT_SOURCE
    bad_price     price not a finite positive number
    bad_ts        ts is not an ISO-8601 timestamp
    stale         ts older than MAX_PEAK_AGE_SEC relative to `now`
    future        ts more than MAX_PEAK_AGE_SEC ahead of `now` (a clock that far off cannot be trusted)

Duplicates are decided by the caller (it owns the seen set) using `Signal.key`.

Numbers are never floats: `price`, `delta`, `vol`, `imb` are taken from the JSON text as Decimal.
"""
from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from typing import Any
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

import msgspec

from shared.domain.messages import Reject, Signal

# Bump when stable_key() changes in any way; it is part of the fingerprint.
DEDUP_SCHEME_VERSION = "peak-dedup-v1"
REJECT_LINE_CHARS = 512
_UTC = timezone.utc


class ParseParams(msgspec.Struct, frozen=True, kw_only=True):
    """The settings parse_line depends on (a subset of Config)."""
    decimals: int = 1
    max_age_sec: float = 600
    strict_source: bool = True
    max_line_bytes: int = 65536

    @classmethod
    def from_config(cls, cfg: object) -> "ParseParams":
        return cls(decimals=cfg.DEDUP_PRICE_DECIMALS, max_age_sec=cfg.MAX_PEAK_AGE_SEC,  # type: ignore[attr-defined]
                   strict_source=cfg.STRICT_SOURCE, max_line_bytes=cfg.MAX_LINE_BYTES)  # type: ignore[attr-defined]


class PeakLine(msgspec.Struct):
    """The raw shape of a PEAK line. The numbers are left untyped so that the decoder's float_hook turns JSON
    numbers with a fraction or exponent into Decimal straight from their text (integers come as int); anything
    else (a string, a bool, null for price) is then rejected as `schema`."""
    ts: str
    action: str
    source: str
    kind: str
    price: Any
    delta: Any = None
    vol: Any = None
    imb: Any = None


_decoder = msgspec.json.Decoder(PeakLine, float_hook=Decimal)
_any_decoder = msgspec.json.Decoder()


def dedup_fingerprint(decimals: int) -> str:
    """sha256 of the description of the key scheme; changes whenever the scheme or its parameters change."""
    desc = f"{DEDUP_SCHEME_VERSION}|action|ts_minute_utc:%Y-%m-%dT%H:%M|kind|price:ROUND_HALF_UP:{int(decimals)}"
    return hashlib.sha256(desc.encode()).hexdigest()


def round_price(price: Decimal, decimals: int) -> Decimal:
    """Price rounded half-up to `decimals` places (raises InvalidOperation when out of range)."""
    return price.quantize(Decimal(1).scaleb(-int(decimals)), rounding=ROUND_HALF_UP)


def parse_ts(ts: str) -> datetime:
    """An aware UTC datetime from an ISO-8601 string ('Z' or an offset; naive means UTC). ValueError if not."""
    if not ts or len(ts) > 64:
        raise ValueError("empty or too long")
    dt = datetime.fromisoformat(ts)
    if dt.tzinfo is None:
        return dt.replace(tzinfo=_UTC)
    return dt.astimezone(_UTC)


def stable_key(action: str, ts_utc: datetime, kind: str, price: Decimal, decimals: int) -> str:
    """`action|ts_minute|kind|price_rounded`, e.g. `PEAK|2025-01-13T20:00|long|95000.0`."""
    return f"{action}|{ts_utc.isoformat(timespec='minutes')[:16]}|{kind}|{round_price(price, decimals)}"


def make_reject(reason: str, detail: str, raw: bytes, offset: int, read_at: float = 0.0) -> Reject:
    """A Reject carrying the line (decoded leniently, truncated to 512 chars) for the operator."""
    return Reject(reason=reason, detail=detail, offset=offset, read_at=read_at,
                  line=raw[:REJECT_LINE_CHARS * 4].decode("utf-8", "replace")[:REJECT_LINE_CHARS])


def too_long(raw_prefix: bytes, offset: int, length: int, read_at: float = 0.0) -> Reject:
    """The Reject for a line over the cap (the caller may hold only a prefix of it)."""
    return make_reject("too_long", f"{length} bytes", raw_prefix, offset, read_at)


def _number(v: Any, name: str, optional: bool = True) -> Decimal | None:
    """The Decimal of a decoded JSON number (None for an optional null); ValueError if it is not a number."""
    if type(v) is Decimal:
        return v
    if type(v) is int:  # exactly int: bool is rejected
        return Decimal(v)
    if v is None and optional:
        return None
    raise ValueError(f"`{name}` must be a number")


def _why_schema(raw: bytes, err: Exception, strict_source: bool) -> tuple[str, str]:
    """Classify a line that did not fit PeakLine: not_peak / wrong_source beat schema when decidable."""
    try:
        obj = _any_decoder.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:  # msgspec leaves bad UTF-8 inside a string to the codec
        return "bad_json", f"{err}; {e}" if isinstance(e, UnicodeDecodeError) else str(err)
    if not isinstance(obj, dict):
        return "schema", f"expected an object, got {type(obj).__name__}"
    if obj.get("action") != "PEAK":
        return "not_peak", f"action={str(obj.get('action'))[:40]!r}"
    if strict_source and obj.get("source") != "DeltaScout":
        return "wrong_source", f"source={str(obj.get('source'))[:40]!r}"
    return "schema", str(err)


def parse_line(raw: bytes, *, offset: int, now: float | None, params: ParseParams,
               read_at: float | None = None) -> Signal | Reject:
    """One log line (without newline) -> Signal or Reject. `now=None` skips the age checks (bootstrap)."""
    ra = (now or 0.0) if read_at is None else read_at
    if len(raw) > params.max_line_bytes:
        return too_long(raw, offset, len(raw), ra)
    if not raw.strip():
        return make_reject("bad_json", "empty line", raw, offset, ra)
    try:
        p = _decoder.decode(raw)
    except msgspec.ValidationError as e:
        reason, detail = _why_schema(raw, e, params.strict_source)
        return make_reject(reason, detail, raw, offset, ra)
    except (msgspec.DecodeError, UnicodeDecodeError) as e:  # bad UTF-8 inside a string is the codec's error
        return make_reject("bad_json", str(e), raw, offset, ra)
    if p.action != "PEAK":
        return make_reject("not_peak", f"action={p.action[:40]!r}", raw, offset, ra)
    if params.strict_source and p.source != "DeltaScout":
        return make_reject("wrong_source", f"source={p.source[:40]!r}", raw, offset, ra)
    kind = p.kind.strip().lower()   # the original's key normalises the kind; so does every later decision here
    if kind != "long" and kind != "short":
        return make_reject("schema", f"kind={p.kind[:40]!r} is not long/short", raw, offset, ra)
    try:
        price = _number(p.price, "price", optional=False)
        delta = _number(p.delta, "delta")
        vol = _number(p.vol, "vol")
        imb = _number(p.imb, "imb")
    except (ValueError, InvalidOperation) as e:
        return make_reject("schema", str(e), raw, offset, ra)
    for name, v in (("delta", delta), ("vol", vol), ("imb", imb)):
        if v is not None and not v.is_finite():
            return make_reject("schema", f"`{name}` is not finite", raw, offset, ra)
    if price is None or not price.is_finite() or price <= 0:
        return make_reject("bad_price", f"price={price}", raw, offset, ra)
    try:
        dt = parse_ts(p.ts)
    except (ValueError, OverflowError) as e:
        return make_reject("bad_ts", f"ts={p.ts[:40]!r}: {e}", raw, offset, ra)
    ts = dt.timestamp()
    if now is not None:
        if now - ts > params.max_age_sec:
            return make_reject("stale", f"age {now - ts:.1f}s > {params.max_age_sec}s", raw, offset, ra)
        if ts - now > params.max_age_sec:
            return make_reject("future", f"ts {ts - now:.1f}s ahead of now", raw, offset, ra)
    try:
        key = stable_key(p.action, dt, kind, price, params.decimals)
    except InvalidOperation:
        return make_reject("bad_price", f"price={price} cannot be rounded", raw, offset, ra)
    return Signal(key=key, ts=ts, kind=kind, price=price, delta=delta, vol=vol, imb=imb,  # type: ignore[arg-type]
                  source=p.source, offset=offset, read_at=ra)
