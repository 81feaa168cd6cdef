"""Benchmark of request signing per API key type (HMAC, RSA-2048, Ed25519): sign, verify, and a signed place +
cancel round trip against the paper exchange (in-process HTTP server, PAPER_FSYNC=0). Prints figures; asserts
nothing.

    .venv/bin/python bench/bench_signing.py [--n 2000] [--round-trips 200]
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from shared.adapters.binance_rest import BinanceClient  # noqa: E402
from shared.adapters.signing import HmacVerifier, config_signer, load_public_key_verifier  # noqa: E402
from tests.pe_helpers import KEY, SECRET, SYMBOL, Paper, paper_env  # noqa: E402

PAYLOAD = ("symbol=BTCUSDC&side=SELL&type=STOP_LOSS_LIMIT&timeInForce=GTC&quantity=0.00105&price=94500.00&"
           "stopPrice=94510.00&newClientOrderId=250118-2009-L-f6228d-t2-1&newOrderRespType=FULL&"
           "recvWindow=5000&timestamp=1737230940000")


def _keys(tmp: Path) -> dict[str, tuple[str, str]]:
    out = {}
    for kind, key in (("RSA-2048", rsa.generate_private_key(65537, 2048)),
                      ("ED25519", ed25519.Ed25519PrivateKey.generate())):
        priv, pub = tmp / f"{kind}.pem", tmp / f"{kind}.pub.pem"
        priv.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
        pub.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo))
        out[kind] = (str(priv), str(pub))
    return out


def _us(samples: list[float]) -> str:
    q = statistics.quantiles(samples, n=100)
    return f"p50 {q[49] * 1e6:7.1f} us  p99 {q[98] * 1e6:7.1f} us"


def _time(fn, n: int) -> list[float]:
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--round-trips", type=int, default=200)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        keys = _keys(tmp)
        setups = {"HMAC": (config_signer(SECRET, "", ""), HmacVerifier(SECRET), "")}
        for kind, (priv, pub) in keys.items():
            setups[kind] = (config_signer("", priv, ""), load_public_key_verifier(pub), pub)
        for kind, (signer, verifier, pub) in setups.items():
            sig = signer.sign(PAYLOAD)
            print(f"{kind:9s} sign   {_us(_time(lambda: signer.sign(PAYLOAD), args.n))}")
            print(f"{kind:9s} verify {_us(_time(lambda: verifier.verify(PAYLOAD, sig), args.n))}")
            (tmp / kind).mkdir()
            env = paper_env(tmp / kind, PAPER_FSYNC="0", PAPER_ORDER_LIMIT_10S="1000000000",
                            **({"PAPER_API_PUBLIC_KEY_FILE": pub} if pub else {}))
            p = Paper(env)
            try:
                c = BinanceClient(p.url, KEY, SECRET, signer=signer)
                bid, _ = c.book_ticker(SYMBOL)
                price = bid - Decimal(500)
                i = [0]

                def trip() -> None:
                    i[0] += 1
                    c.place_order(SYMBOL, "BUY", "LIMIT", Decimal("0.001"), price=price, time_in_force="GTC",
                                  client_order_id=f"b-{i[0]}")
                    c.cancel_order(SYMBOL, client_order_id=f"b-{i[0]}")
                print(f"{kind:9s} signed place+cancel round trip on the paper exchange: "
                      f"{_us(_time(trip, args.round_trips))}")
            finally:
                p.stop()


if __name__ == "__main__":
    main()
