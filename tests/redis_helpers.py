"""A throw-away real redis-server for tests, closed like the product's (`with redis_server() as url: ...`): the
`default` user is locked, `url` is the admin's, and `user_url(url, user, prefix)` gives a product user (the rules of
shared.adapters.redis_acl) for a prefix."""
from __future__ import annotations

import contextlib
import secrets
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Iterator
from urllib.parse import urlsplit

import redis

from shared.adapters import redis_acl
from shared.adapters.credentials import with_user

# One password per user for the whole test session (random: nothing relies on a known one).
PASSWORDS = {u: secrets.token_urlsafe(16) for u in redis_acl.USER_NAMES}
_PREFIXES: dict[int, set[str]] = {}  # port -> prefixes whose users are set on that server


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(cond, timeout: float = 10.0, interval: float = 0.005, what: str = "condition"):
    """Poll `cond()` until it returns a truthy value (returned) or raise AssertionError after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        v = cond()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def user_url(url: str, user: str, prefix: str) -> str:
    """`url`'s server as the product's `user`, whose rights cover `prefix` (and every prefix set before on that
    server: tests of one module share it)."""
    port = urlsplit(url).port or 6379
    known = _PREFIXES.setdefault(port, set())
    if prefix not in known:
        known.add(prefix)
        admin = redis.Redis.from_url(with_user(url, redis_acl.ADMIN, PASSWORDS[redis_acl.ADMIN]))
        try:
            redis_acl.apply(admin, tuple(sorted(known)), PASSWORDS)
        finally:
            admin.close()
    return with_user(url, user, PASSWORDS[user])


def plain_url(url: str) -> str:
    """`url` without credentials (an unauthenticated client)."""
    p = urlsplit(url)
    return f"{p.scheme}://{p.hostname}:{p.port}{p.path}"


@contextlib.contextmanager
def redis_server(timeout: float = 10.0, port: int | None = None, extra_args: tuple[str, ...] = (),
                 aclfile: str | None = None) -> Iterator[str]:
    """Start `redis-server` on a free port (or `port`) in a temp dir, without persistence, with the `default`
    user locked; wait for PING with a deadline; yield the admin's URL; kill it. With `aclfile` (the product's, from
    shared.adapters.credentials) the users are that file's and the URL carries no credentials."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not on PATH")
    tmp = tempfile.mkdtemp(prefix="redis-test-")
    users = ["--aclfile", aclfile] if aclfile else redis_acl.server_args(PASSWORDS[redis_acl.ADMIN])
    fixed = port
    for _attempt in range(5):
        port = fixed or free_port()
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--dir", tmp, *users, *extra_args],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        plain = f"redis://127.0.0.1:{port}/0"
        url = plain if aclfile else with_user(plain, redis_acl.ADMIN, PASSWORDS[redis_acl.ADMIN])
        r = redis.Redis.from_url(url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        ok = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ok = bool(r.ping())
                break
            except redis.AuthenticationError:  # closed by the aclfile: it is up
                ok = True
                break
            except redis.ConnectionError:
                time.sleep(0.01)
        r.close()
        if ok:
            break
        proc.kill()
        proc.wait()
    else:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError("could not start redis-server")
    _PREFIXES.pop(port, None)
    try:
        yield url
    finally:
        proc.kill()
        proc.wait()
        _PREFIXES.pop(port, None)
        shutil.rmtree(tmp, ignore_errors=True)
