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


class RsaSigner:
    """RSASSA-PKCS1-v1_5 with SHA-256; base64 output."""
    key_type = "RSA"

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "RsaSigner(***)"

    def sign(self, payload: str) -> str:
        """Base64 of the PKCS#1 v1.5 SHA-256 signature of the payload's UTF-8 bytes."""
        return base64.b64encode(self._key.sign(payload.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


class Ed25519Signer:
    """Ed25519; base64 output."""
    key_type = "ED25519"

    def __init__(self, key: ed25519.Ed25519PrivateKey) -> None:
        self._key = key

    def __repr__(self) -> str:
        return "Ed25519Signer(***)"

    def sign(self, payload: str) -> str:
        """Base64 of the Ed25519 signature of the payload's UTF-8 bytes."""
        return base64.b64encode(self._key.sign(payload.encode())).decode()


def load_private_key_signer(path: str, passphrase: str = "") -> RsaSigner | Ed25519Signer:
    """An RSA or Ed25519 signer from a PEM private key file (the key type is read from the PEM)."""
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise KeyFileError(f"cannot read the private key file {path}: {e.strerror}") from None
    try:
        key = serialization.load_pem_private_key(data, password=passphrase.encode() or None)
    except TypeError:
        raise KeyFileError(f"{path}: the key is encrypted and no passphrase was given, or it is not encrypted and "
                           f"a passphrase was given") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path}: not a PEM private key, or the passphrase is wrong") from None
    if isinstance(key, rsa.RSAPrivateKey):
        return RsaSigner(key)
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return Ed25519Signer(key)
    raise KeyFileError(f"{path}: a {type(key).__name__}; Binance accepts RSA or Ed25519 keys (or HMAC secrets)")


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
    try:
        key = serialization.load_pem_public_key(Path(path).read_bytes())
    except OSError as e:
        raise KeyFileError(f"cannot read the public key file {path}: {e.strerror}") from None
    except (ValueError, UnsupportedAlgorithm):
        raise KeyFileError(f"{path}: not a PEM public key") from None
    if not isinstance(key, (rsa.RSAPublicKey, ed25519.Ed25519PublicKey)):
        raise KeyFileError(f"{path}: a {type(key).__name__}; allowed: RSA or Ed25519 public keys")
    return PublicKeyVerifier(key)


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
