"""A throw-away real redis-server for tests: `with redis_server() as url: ...`."""
from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Iterator

import redis


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


@contextlib.contextmanager
def redis_server(timeout: float = 10.0, port: int | None = None, extra_args: tuple[str, ...] = ()) -> Iterator[str]:
    """Start `redis-server` on a free port (or `port`) in a temp dir, without persistence; wait for PING with a
    deadline; yield its URL; kill it."""
    exe = shutil.which("redis-server")
    if exe is None:
        raise RuntimeError("redis-server not on PATH")
    tmp = tempfile.mkdtemp(prefix="redis-test-")
    fixed = port
    for _attempt in range(5):
        port = fixed or free_port()
        proc = subprocess.Popen([exe, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                                 "--dir", tmp, *extra_args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        url = f"redis://127.0.0.1:{port}/0"
        r = redis.Redis.from_url(url, socket_connect_timeout=0.2)
        deadline = time.monotonic() + timeout
        ok = False
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                ok = bool(r.ping())
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
    try:
        yield url
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)
