"""Margin user data stream access: `POST /sapi/v1/userListenToken` and the listenToken it returns.

Binance (2025+) serves the margin account's events on the WebSocket API: a signed REST call makes a listenToken for
the cross wallet (default) or for the isolated wallet of one symbol (`isIsolated=true` + `symbol`), valid `validity`
ms (default and at most 24 h, wall time); `userDataStream.subscribe.listenToken` (ws_api.py) then subscribes with it.

The token is self-contained: the wallet, the symbol and the expiration time, authenticated with an HMAC keyed by the
API secret. So nothing is stored, a token survives an exchange restart as it would on Binance, and the WebSocket side
needs only the secret to check one.
"""
from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from services.paper_exchange import params as P
from services.paper_exchange.api import Handler
from services.paper_exchange.app import PaperApp
from services.paper_exchange.model import CROSS, ISOLATED, ApiError
from services.paper_exchange.ws_events import wallet_id

MAX_VALIDITY_MS = 24 * 3600 * 1000
_DOMAIN = b"paper-listen-token|"  # keeps this MAC apart from request signatures made with the same secret
_MAC_LEN = 16


@dataclass(frozen=True)
class Grant:
    """What a valid listenToken gives: the events of one margin wallet until `expiration_ms` (wall time)."""
    wallet: str
    expiration_ms: int


def make_token(secret: str, wallet: str, expiration_ms: int) -> str:
    """A listenToken for `wallet` expiring at `expiration_ms` (the random part makes every token distinct)."""
    body = f"{wallet}|{expiration_ms}|{secrets.token_hex(8)}".encode()
    mac = hmac.new(secret.encode(), _DOMAIN + body, hashlib.sha256).digest()[:_MAC_LEN]
    return base64.urlsafe_b64encode(body + mac).decode().rstrip("=")


def read_token(secret: str, token: Any, now_ms: int) -> Grant:
    """The grant of a token that is authentic and not expired; -1209 otherwise (as Binance answers)."""
    invalid = ApiError(-1209, "Invalid listenToken.")
    if not isinstance(token, str) or not token:
        raise invalid
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
    except (binascii.Error, ValueError):
        raise invalid from None
    if len(raw) <= _MAC_LEN:
        raise invalid
    body, mac = raw[:-_MAC_LEN], raw[-_MAC_LEN:]
    expected = hmac.new(secret.encode(), _DOMAIN + body, hashlib.sha256).digest()[:_MAC_LEN]
    if not hmac.compare_digest(mac, expected):
        raise invalid
    wallet, expiration, _nonce = body.decode().split("|")
    if int(expiration) <= now_ms:
        raise invalid
    return Grant(wallet, int(expiration))


def _wallet(app: PaperApp, p: dict[str, str]) -> str:
    """isIsolated (BOOLEAN: true/false, default cross) and, for isolated, the mandatory symbol."""
    flag = p.get("isIsolated", "false").lower()
    if flag not in ("true", "false"):
        raise ApiError(-1100, "Illegal characters found in parameter 'isIsolated'; legal range is 'true, false'.")
    if flag == "false":
        return CROSS
    symbol = P.required(p, "symbol")
    if symbol != app.s.symbol:
        raise ApiError(-1121, "Invalid symbol.")
    return wallet_id(ISOLATED, symbol)


def listen_token(app: PaperApp, p: dict[str, str]) -> Any:
    """POST /sapi/v1/userListenToken -> {"token", "expirationTime"} (expirationTime = now + validity, wall ms)."""
    wallet = _wallet(app, p)
    validity = P.integer(p, "validity")
    if validity is None:
        validity = MAX_VALIDITY_MS
    if not 0 < validity <= MAX_VALIDITY_MS:
        raise ApiError(-1100, f"Illegal characters found in parameter 'validity'; legal range is "
                              f"'1 - {MAX_VALIDITY_MS}'.")
    expiration = int(time.time() * 1000) + validity
    return {"token": make_token(app.s.api_secret, wallet, expiration), "expirationTime": expiration}


SIGNED: dict[tuple[str, str], Handler] = {
    ("POST", "/sapi/v1/userListenToken"): listen_token,
}
