"""Request signing for Binance's three API key types: HMAC-SHA256, RSA (PKCS#1 v1.5, SHA-256) and Ed25519.

As Binance documents it (rest-api.md "SIGNED Endpoint Examples", web-socket-api.md "SIGNED request example"):
* HMAC: hex of HMAC-SHA256(secret, payload), case-insensitive;
* RSA: base64 of RSASSA-PKCS1-v1_5 over SHA-256 of the payload, case-sensitive;
* Ed25519: base64 of the Ed25519 signature of the payload, case-sensitive.
On REST the payload is the percent-encoded query string (required since 2026-01-15, CHANGELOG 2025-12-17) and the
base64 signature is itself percent-encoded into the query; on the WebSocket API it is the params sorted by name,
`k=v` joined with `&`, NOT percent-encoded.

A private key file (PEM, PKCS#8 or traditional, optionally encrypted with a passphrase) selects RSA or Ed25519 by
the key it holds; without one the API secret signs with HMAC. Key material never appears in repr or errors.
"""
from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Protocol

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

KEY_TYPES = ("HMAC", "RSA", "ED25519")


class KeyFileError(ValueError):
    """The private/public key file cannot be used (missing, wrong passphrase, not RSA or Ed25519)."""


class Signer(Protocol):
    """Signs a payload the way Binance verifies it for one API key."""
    key_type: str

    def sign(self, payload: str) -> str:
        """The signature value (hex for HMAC, base64 for RSA/Ed25519), not yet URL-encoded."""


class HmacSigner:
    """HMAC-SHA256 with the API secret; hex output."""
    key_type = "HMAC"

    def __init__(self, secret: str) -> None:
        self._secret = secret.encode()

    def __repr__(self) -> str:
        return "HmacSigner(***)"

    def sign(self, payload: str) -> str:
        """Hex HMAC-SHA256 of the payload's UTF-8 bytes."""
        return hmac.new(self._secret, payload.encode(), hashlib.sha256).hexdigest()


class KeySigner:
    """RSA (RSASSA-PKCS1-v1_5 with SHA-256) or Ed25519, by the private key it holds; base64 output."""

    def __init__(self, key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> None:
        self._key = key
        self.key_type = "RSA" if isinstance(key, rsa.RSAPrivateKey) else "ED25519"

    def __repr__(self) -> str:
        return f"KeySigner({self.key_type}, ***)"

    def sign(self, payload: str) -> str:
        """Base64 of the signature of the payload's UTF-8 bytes."""
        if isinstance(self._key, rsa.RSAPrivateKey):
            raw = self._key.sign(payload.encode(), padding.PKCS1v15(), hashes.SHA256())
        else:
            raw = self._key.sign(payload.encode())
        return base64.b64encode(raw).decode()


_KEY_CLASSES = {"private": (rsa.RSAPrivateKey, ed25519.Ed25519PrivateKey),
                "public": (rsa.RSAPublicKey, ed25519.Ed25519PublicKey)}


def load_pem_key(path: str, kind: str, passphrase: str = "") -> object:
    """The RSA or Ed25519 key of `kind` ("private": PKCS#8 or traditional, optionally encrypted with `passphrase`;
    "public": as uploaded to Binance) from a PEM file; KeyFileError naming the file, never the key material."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read the {kind} key file {path}: {e.strerror}") from None
    try:
        key = (serialization.load_pem_private_key(data, password=passphrase.encode() or None) if kind == "private"
               else serialization.load_pem_public_key(data))
    except TypeError:   # private only: a passphrase missing, or given for a key that has none
        raise KeyFileError(f"{path}: the key is encrypted and no passphrase was given, or it is not encrypted and "
                           f"a passphrase was given") from None
    except (ValueError, UnsupportedAlgorithm):
        wrong = ", or the passphrase is wrong" if kind == "private" else ""
        raise KeyFileError(f"{path}: not a PEM {kind} key{wrong}") from None
    if not isinstance(key, _KEY_CLASSES[kind]):
        raise KeyFileError(f"{path}: a {type(key).__name__}; allowed: RSA or Ed25519 {kind} keys (Binance accepts "
                           "those, or HMAC secrets)")
    return key


def load_private_key_signer(path: str, passphrase: str = "") -> KeySigner:
    """An RSA or Ed25519 signer from a PEM private key file (the key type is read from the PEM)."""
    return KeySigner(load_pem_key(path, "private", passphrase))  # type: ignore[arg-type]


def make_signer(api_secret: str, private_key_file: str = "", passphrase: str = "") -> Signer:
    """The signer of the configured key: the private key file when set (the secret is then not needed), else HMAC."""
    if private_key_file:
        return load_private_key_signer(private_key_file, passphrase)
    return HmacSigner(api_secret)


# ---- verification (the paper exchange's side) --------------------------------------------------------------------

class Verifier(Protocol):
    """Checks a signature the way Binance does for one API key."""
    key_type: str

    def verify(self, payload: str, signature: str) -> bool:
        """True when `signature` (already URL-decoded) is this key's signature of `payload`."""


class HmacVerifier:
    """HMAC-SHA256 verification; the hex signature is case-insensitive, as Binance documents."""
    key_type = "HMAC"

    def __init__(self, secret: str) -> None:
        self._signer = HmacSigner(secret)

    def verify(self, payload: str, signature: str) -> bool:
        """Constant-time comparison of the expected hex with the given one (lower-cased)."""
        return hmac.compare_digest(self._signer.sign(payload), signature.lower())


class PublicKeyVerifier:
    """RSA (PKCS#1 v1.5, SHA-256) or Ed25519 verification of a base64 signature (case-sensitive)."""

    def __init__(self, key: rsa.RSAPublicKey | ed25519.Ed25519PublicKey) -> None:
        self._key = key
        self.key_type = "RSA" if isinstance(key, rsa.RSAPublicKey) else "ED25519"

    def verify(self, payload: str, signature: str) -> bool:
        """Decode the base64 signature and check it against the payload's UTF-8 bytes."""
        try:
            raw = base64.b64decode(signature, validate=True)
            if isinstance(self._key, rsa.RSAPublicKey):
                self._key.verify(raw, payload.encode(), padding.PKCS1v15(), hashes.SHA256())
            else:
                self._key.verify(raw, payload.encode())
        except (InvalidSignature, ValueError):
            return False
        return True


def load_public_key_verifier(path: str) -> PublicKeyVerifier:
    """A verifier from a PEM public key file (RSA or Ed25519), as uploaded to Binance for an API key."""
    return PublicKeyVerifier(load_pem_key(path, "public"))  # type: ignore[arg-type]


def config_signer(api_secret: str, private_key_file: str, passphrase: str) -> Signer:
    """`make_signer` for the configured BINANCE_* settings; a key that cannot be used stops start-up naming the
    setting (ConfigError), never showing the passphrase or the key."""
    from shared.config import ConfigError
    try:
        return make_signer(api_secret, private_key_file, passphrase)
    except KeyFileError as e:
        raise ConfigError(f"BINANCE_PRIVATE_KEY_FILE={private_key_file!r}: {e}; allowed: a PEM RSA or Ed25519 "
                          f"private key (BINANCE_PRIVATE_KEY_PASSPHRASE when encrypted), or unset for HMAC with "
                          f"BINANCE_API_SECRET") from None
