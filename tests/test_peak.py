"""Unit tests of the pure PEAK-line core: every reject reason, the stable dedup key, the fingerprint."""
from __future__ import annotations

import json
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from shared.domain.messages import Reject, Signal
from shared.domain.peak import (ParseParams, dedup_fingerprint, make_reject, parse_line, round_price, stable_key,
                                too_long)

NOW = datetime(2025, 1, 13, 20, 5, tzinfo=timezone.utc).timestamp()
P = ParseParams(decimals=1, max_age_sec=600, strict_source=True, max_line_bytes=4096)


def line(**over: object) -> bytes:
    d: dict[str, object] = {"ts": "2025-01-13T20:00:12Z", "action": "PEAK", "source": "DeltaScout", "kind": "long",
                            "price": 95000.0, "delta": 123.4, "vol": 456.7, "imb": 0.61}
    for k, v in over.items():
        if v is _DROP:
            d.pop(k, None)
        else:
            d[k] = v
    return json.dumps(d).encode()


_DROP = object()


def parse(raw: bytes, params: ParseParams = P, now: float | None = NOW) -> Signal | Reject:
    return parse_line(raw, offset=7, now=now, params=params, read_at=NOW)


def reason(raw: bytes, params: ParseParams = P, now: float | None = NOW) -> str:
    m = parse(raw, params, now)
    assert isinstance(m, Reject), m
    assert m.offset == 7
    return m.reason


def test_good_line_becomes_signal_with_decimals_from_the_text() -> None:
    raw = (b'{"ts":"2025-01-13T20:00:12Z","action":"PEAK","source":"DeltaScout","kind":"short",'
           b'"price":95000.10000000000000001,"delta":-12.5,"vol":456.7,"imb":0.61}')
    m = parse(raw)
    assert isinstance(m, Signal)
    assert m.price == Decimal("95000.10000000000000001")  # never went through float
    assert m.delta == Decimal("-12.5") and m.vol == Decimal("456.7") and m.imb == Decimal("0.61")
    assert m.kind == "short" and m.source == "DeltaScout" and m.offset == 7 and m.read_at == NOW
    assert m.ts == datetime(2025, 1, 13, 20, 0, 12, tzinfo=timezone.utc).timestamp()
    assert m.key == "PEAK|2025-01-13T20:00|short|95000.1"


def test_optional_numbers_may_be_missing_or_null() -> None:
    m = parse(line(delta=_DROP, vol=None, imb=_DROP))
    assert isinstance(m, Signal) and m.delta is None and m.vol is None and m.imb is None


def test_extra_fields_are_ignored() -> None:
    assert isinstance(parse(line(extra={"a": [1, 2]}, sym="BTCUSDC")), Signal)


def test_example_key_from_the_guide() -> None:
    assert parse(line()).key == "PEAK|2025-01-13T20:00|long|95000.0"  # type: ignore[union-attr]


@pytest.mark.parametrize("raw,expected", [
    (b"garbage", "bad_json"),
    (b"{", "bad_json"),
    (b"", "bad_json"),
    (b"   ", "bad_json"),
    (b"\xff\xfe\x00", "bad_json"),
    (b'{"ts":"x",}', "bad_json"),
    (b"[1,2]", "schema"),
    (b'"PEAK"', "schema"),
    (b"42", "schema"),
    (line(price=_DROP), "schema"),
    (line(ts=_DROP), "schema"),
    (line(kind=_DROP), "schema"),
    (line(ts=1736798412), "schema"),
    (line(price="95000.0"), "schema"),
    (line(price=None), "schema"),
    (line(price=True), "schema"),
    (line(price=[1]), "schema"),
    (line(delta="12"), "schema"),
    (line(vol={"a": 1}), "schema"),
    (line(kind="sideways"), "schema"),
    (line(action="TROUGH"), "not_peak"),
    (line(action="peak"), "not_peak"),
    (json.dumps({"action": "HEARTBEAT", "ts": 1}).encode(), "not_peak"),
    (line(source="Other"), "wrong_source"),
    (json.dumps({"action": "PEAK", "source": "X"}).encode(), "wrong_source"),
    (line(price=0), "bad_price"),
    (line(price=-1.5), "bad_price"),
    (line(price=0.0), "bad_price"),
    (line(price=1e300), "bad_price"),
    (line(ts="yesterday"), "bad_ts"),
    (line(ts="2025-13-40T99:00:00Z"), "bad_ts"),
    (line(ts=""), "bad_ts"),
    (line(ts="2025-01-13T19:50:00Z"), "stale"),
    (line(ts="2025-01-13T20:30:00Z"), "future"),
])
def test_reject_reasons(raw: bytes, expected: str) -> None:
    assert reason(raw) == expected


def test_nan_and_infinity_are_not_json() -> None:
    assert reason(b'{"ts":"2025-01-13T20:00:12Z","action":"PEAK","source":"DeltaScout","kind":"long","price":NaN}') \
        == "bad_json"
    assert reason(b'{"ts":"2025-01-13T20:00:12Z","action":"PEAK","source":"DeltaScout","kind":"long",'
                  b'"price":Infinity}') == "bad_json"


def test_too_long_is_decided_before_parsing() -> None:
    raw = line(pad="x" * 5000)
    m = parse(raw)
    assert isinstance(m, Reject) and m.reason == "too_long" and len(m.line) == 512
    assert too_long(b"abc", 3, 10**9).detail == f"{10**9} bytes"


def test_source_not_checked_when_not_strict() -> None:
    m = parse(line(source="Other"), ParseParams(strict_source=False))
    assert isinstance(m, Signal) and m.source == "Other"


def test_stale_boundary_and_no_age_check_without_now() -> None:
    ts = datetime(2025, 1, 13, 20, 0, 0, tzinfo=timezone.utc).timestamp()
    raw = line(ts="2025-01-13T20:00:00Z")
    assert isinstance(parse_line(raw, offset=0, now=ts + 600, params=P), Signal)
    assert parse_line(raw, offset=0, now=ts + 600.001, params=P).reason == "stale"  # type: ignore[union-attr]
    assert isinstance(parse_line(raw, offset=0, now=None, params=P), Signal)  # bootstrap seeding


def test_reject_line_is_truncated_to_512_chars_and_decoded_leniently() -> None:
    m = make_reject("bad_json", "", b"\xff" + b"a" * 2000, 0)
    assert len(m.line) == 512 and m.line[0] == "\ufffd"


@pytest.mark.parametrize("price,decimals,expected", [
    ("95000.0", 1, "95000.0"),
    ("95000", 1, "95000.0"),
    ("95000.05", 1, "95000.1"),     # ROUND_HALF_UP, not banker's rounding
    ("95000.15", 1, "95000.2"),
    ("95000.25", 1, "95000.3"),     # float rounding would give 95000.2
    ("95000.04999", 1, "95000.0"),
    ("95000.5", 0, "95001"),
    ("95001.5", 0, "95002"),
    ("95000.125", 2, "95000.13"),
    ("0.00015", 4, "0.0002"),
    ("1E+2", 1, "100.0"),
])
def test_price_rounding_half_up(price: str, decimals: int, expected: str) -> None:
    assert str(round_price(Decimal(price), decimals)) == expected
    raw = line(price=_DROP)[:-1] + f', "price": {price}}}'.encode()
    m = parse(raw, ParseParams(decimals=decimals, max_age_sec=600))
    assert isinstance(m, Signal) and m.key.endswith(f"|long|{expected}")


@pytest.mark.parametrize("ts,minute", [
    ("2025-01-13T20:00:00Z", "2025-01-13T20:00"),
    ("2025-01-13T20:00:59.999Z", "2025-01-13T20:00"),
    ("2025-01-13T20:01:00Z", "2025-01-13T20:01"),
    ("2025-01-13T20:00:12+00:00", "2025-01-13T20:00"),
    ("2025-01-13T22:00:12+02:00", "2025-01-13T20:00"),   # bucketed in UTC
    ("2025-01-13T15:00:30-05:00", "2025-01-13T20:00"),
    ("2025-01-13T20:00:12", "2025-01-13T20:00"),         # naive means UTC
])
def test_ts_bucketed_to_the_minute_in_utc(ts: str, minute: str) -> None:
    m = parse(line(ts=ts), ParseParams(max_age_sec=10**9))
    assert isinstance(m, Signal) and m.key == f"PEAK|{minute}|long|95000.0"


def test_same_minute_same_rounded_price_is_the_same_key() -> None:
    a = parse(line(ts="2025-01-13T20:00:01Z", price=95000.04, delta=1))
    b = parse(line(ts="2025-01-13T20:00:59Z", price=94999.95, delta=2))
    c = parse(line(ts="2025-01-13T20:00:59Z", price=94999.95, kind="short"))
    assert isinstance(a, Signal) and isinstance(b, Signal) and isinstance(c, Signal)
    assert a.key == b.key != c.key


def test_stable_key_function() -> None:
    dt = datetime(2025, 1, 13, 20, 0, 12, tzinfo=timezone.utc)
    assert stable_key("PEAK", dt, "long", Decimal("95000"), 1) == "PEAK|2025-01-13T20:00|long|95000.0"


def test_fingerprint_is_stable_and_changes_with_decimals() -> None:
    assert dedup_fingerprint(1) == dedup_fingerprint(1)
    assert len(dedup_fingerprint(1)) == 64
    assert len({dedup_fingerprint(d) for d in range(6)}) == 6


@pytest.mark.parametrize("raw", [b'"\x80"', b'{"action":"\xff"}', b'["\xc3"]'])
def test_invalid_utf8_inside_a_string_is_a_bad_json_reject(raw: bytes) -> None:
    """Found by the property below: msgspec leaves invalid UTF-8 in a JSON string to the codec."""
    m = parse(raw)
    assert isinstance(m, Reject) and m.reason == "bad_json", m


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_raise(raw: bytes) -> None:
    m = parse(raw)
    assert isinstance(m, (Signal, Reject))


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
                    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.sampled_from(
                        ["ts", "action", "source", "kind", "price", "delta", "vol", "imb", "x"]), c, max_size=8),
                    max_leaves=12))
def test_arbitrary_json_never_raises(obj: object) -> None:
    m = parse(json.dumps(obj).encode())
    assert isinstance(m, (Signal, Reject))


@pytest.mark.parametrize("kind,side", [("LONG", "long"), (" Long ", "long"), ("SHORT", "short")])
def test_kind_is_normalised_as_the_originals_key_does_and_traded_on_that_side(kind, side):
    # §12: the original keys " Long " as long but then opens it as a SHORT (raw `kind == "long"`); here the
    # normalised kind decides everything.
    sig = parse_line(line(kind=kind), offset=0, now=None, params=P)
    assert isinstance(sig, Signal) and sig.kind == side and f"|{side}|" in sig.key
