"""Signed-request checks: API key, signature (HMAC, RSA or Ed25519) over the raw bytes received, timestamp.

Since 2026-01-15 Binance verifies signatures over the percent-encoded payload (CHANGELOG 2025-12-17): a client that
signs the raw characters and lets its HTTP library encode them afterwards gets -1022. Here the signature is checked
over the query + body exactly as received, and a payload that carries a character which must be percent-encoded
(anything but A-Z a-z 0-9 - _ . ~, the separators & and =, %XX escapes and '+' for a space) is -1022 too: it was
signed before encoding, or not encoded at all.
"""
from __future__ import annotations

import hmac
import re
from collections.abc import Mapping
from decimal import Decimal
from urllib.parse import unquote

from services.paper_exchange.model import ApiError
from shared.adapters.signing import HmacVerifier, Verifier, load_public_key_verifier

_ENCODED_RE = re.compile(r"^(?:[A-Za-z0-9\-_.~&=+]|%[0-9A-Fa-f]{2})*$")


def verifier(api_secret: str, public_key_file: str = "") -> Verifier:
    """The verifier of the paper account's API key: its public key (RSA/Ed25519) when one is registered, else HMAC."""
    return load_public_key_verifier(public_key_file) if public_key_file else HmacVerifier(api_secret)


def strip_signature(raw: str) -> tuple[str, str | None]:
    """(raw string without its signature parameter, the signature). Nothing is re-encoded or sorted."""
    parts = raw.split("&") if raw else []
    keep, sig = [], None
    for p in parts:
        if p.startswith("signature="):
            sig = p[len("signature="):]
        else:
            keep.append(p)
    return "&".join(keep), sig


def check_key(headers: Mapping[str, str], api_key: str) -> None:
    """-2014 when the key header is missing/malformed, -2015 when it is not ours."""
    key = headers.get("X-MBX-APIKEY")
    if not key:
        raise ApiError(-2014, "API-key format invalid.", http=401)
    if not hmac.compare_digest(key.encode(), api_key.encode()):
        raise ApiError(-2015, "Invalid API-key, IP, or permissions for action.", http=401)


def check_signature(query: str, body: str, key: Verifier) -> None:
    """Binance's totalParams = query string + request body, each exactly as received (and percent-encoded)."""
    q, sig_q = strip_signature(query)
    b, sig_b = strip_signature(body)
    sig = sig_q or sig_b
    if not sig:
        raise ApiError(-1102, "Mandatory parameter 'signature' was not sent, was empty/null, or malformed.")
    payload = q + b
    if not _ENCODED_RE.match(payload) or not key.verify(payload, unquote(sig)):
        raise ApiError(-1022, "Signature for this request is not valid.")


_RECV_WINDOW_RE = re.compile(r"^[0-9]{1,20}(\.[0-9]{1,3})?$")


def check_timestamp(params: Mapping[str, str], now_ms: int) -> None:
    """-1021 when the request is older than recvWindow or more than 1000 ms ahead of our clock.

    As Binance: `timestamp` may be in milliseconds or microseconds (16 digits); `recvWindow` is milliseconds
    with up to three decimals (microsecond precision), at most 60000.
    """
    ts_raw = params.get("timestamp", "")
    if not ts_raw.isdigit():
        raise ApiError(-1102, "Mandatory parameter 'timestamp' was not sent, was empty/null, or malformed.")
    window_raw = params.get("recvWindow", "5000")
    if not _RECV_WINDOW_RE.match(window_raw):
        raise ApiError(-1100, "Illegal characters found in parameter 'recvWindow'; "
                              "legal range is '^[0-9]{1,20}(\\.[0-9]{1,3})?$'.")
    window_us = int(Decimal(window_raw) * 1000)
    if window_us > 60_000_000:
        raise ApiError(-1131, "recvWindow must be less than 60000")
    ts_us = int(ts_raw) if len(ts_raw) >= 16 else int(ts_raw) * 1000
    now_us = now_ms * 1000
    if ts_us > now_us + 1_000_000:
        raise ApiError(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
    if now_us - ts_us > window_us:
        raise ApiError(-1021, "Timestamp for this request is outside of the recvWindow.")
