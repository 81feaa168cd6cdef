"""Benchmark of `python -m services.signal_ingest` against a real redis-server. Prints figures; asserts nothing.

    .venv/bin/python bench/bench_ingest.py [--latency-lines 500] [--throughput-lines 100000] [--big-gb 1]

1. append -> XADD latency, one line at a time (observed with XREAD BLOCK from another connection)
2. sustained lines/s with validation and dedup (a backlog of N lines appended at once; ~5 % duplicates,
   ~5 % garbage), per-decision JSON logs written to a file as in production
3. time to pick up one new line on a 1 KB log vs a ~1 GB log (sparse file + real lines at the end)
4. RSS of the ingest process
"""
from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.redis_helpers import redis_server, user_url, wait_until  # noqa: E402


def peak(i: int, ts: str) -> bytes:
    return json.dumps({"ts": ts, "action": "PEAK", "source": "DeltaScout", "kind": "long" if i % 2 else "short",
                       "price": 50_000 + i * 0.5, "delta": 123.4, "vol": 456.7, "imb": 0.61},
                      separators=(",", ":")).encode() + b"\n"


def now_iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def append(p: Path, data: bytes) -> None:
    fd = os.open(p, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


def cpu_sec(pid: int) -> float:
    """user+system CPU seconds used so far by `pid`."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return -1


class Service:
    def __init__(self, url: str, log: Path, workdir: Path, **env: str) -> None:
        self.prefix = f"bench{uuid.uuid4().hex[:8]}:"
        self.err = workdir / f"{self.prefix[:-1]}.jsonl"
        self.env = {**os.environ, "DELTASCOUT_LOG": str(log), "REDIS_URL": user_url(url, "signal_ingest", self.prefix),
                    "EXEC_PREFIX": self.prefix,
                    "MAX_PEAK_AGE_SEC": str(10**9), "SEEN_KEYS_MAX": "500", "STREAM_MAXLEN": "200000", **env}
        self.url = url
        self.r = redis.Redis.from_url(url)
        with open(self.err, "wb") as err:
            self.proc = subprocess.Popen([sys.executable, "-m", "services.signal_ingest"], cwd=ROOT, env=self.env,
                                         stdout=subprocess.DEVNULL, stderr=err)
        wait_until(lambda: b'"event":"started"' in self.err.read_bytes() or self.proc.poll() is not None,
                   timeout=60, what="service start")
        if self.proc.poll() is not None:
            raise RuntimeError(self.err.read_text())

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def measure_pickup(svc: Service, log: Path, n: int) -> list[float]:
    """Append one line at a time; the latency until XREAD BLOCK on the signals stream returns it."""
    reader = redis.Redis.from_url(svc.url)   # its own connection, as the admin (the server's `default` is locked)
    stream = svc.prefix + "signals"
    last = "$"
    res = reader.xrevrange(stream, count=1)
    if res:
        last = res[0][0].decode()
    out = []
    base = random.randrange(10**6, 10**7)
    for i in range(n):
        line = peak(base + i, now_iso())
        t0 = time.perf_counter()
        append(log, line)
        got = reader.xread({stream: last}, block=5000, count=1)
        t1 = time.perf_counter()
        if not got:
            raise RuntimeError("line not published within 5 s")
        last = got[0][1][-1][0].decode()
        out.append(t1 - t0)
    reader.close()
    return out


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def fmt_ms(x: float) -> str:
    return f"{x * 1000:.3f} ms"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--latency-lines", type=int, default=500)
    ap.add_argument("--throughput-lines", type=int, default=100_000)
    ap.add_argument("--big-gb", type=float, default=1.0)
    ap.add_argument("--pickup-lines", type=int, default=100)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    with redis_server() as url:
        # 1. latency
        log = work / "lat.log"
        log.write_bytes(b"")
        svc = Service(url, log, work)
        for _ in range(20):  # warm-up
            measure_pickup(svc, log, 1)
        lat = measure_pickup(svc, log, args.latency_lines)
        print(f"[latency] append -> XADD visible via XREAD BLOCK, {len(lat)} lines one at a time: "
              f"p50 {fmt_ms(pct(lat, 50))}  p90 {fmt_ms(pct(lat, 90))}  p99 {fmt_ms(pct(lat, 99))}  "
              f"max {fmt_ms(max(lat))}   (target p99 < 5 ms)")
        print(f"[rss] after latency run: {rss_kb(svc.proc.pid) / 1024:.1f} MiB")
        svc.stop()

        # 2. throughput
        log = work / "thr.log"
        log.write_bytes(b"")
        svc = Service(url, log, work)
        rnd = random.Random(7)
        n = args.throughput_lines
        ts = now_iso()
        chunks = []
        for i in range(n):
            x = rnd.random()
            if x < 0.05:
                chunks.append(b"garbage line %d\n" % i)
            elif x < 0.10 and i > 10:
                chunks.append(peak(i - rnd.randint(1, 10), ts))   # a recent duplicate
            else:
                chunks.append(peak(i, ts))
        data = b"".join(chunks)
        c0 = cpu_sec(svc.proc.pid)
        t0 = time.perf_counter()
        append(log, data)
        off_key = svc.prefix + "ingest:offset"
        wait_until(lambda: svc.r.hget(off_key, "offset") == str(len(data)).encode(), timeout=600,
                   interval=0.01, what="backlog drained")
        dt = time.perf_counter() - t0
        cpu = cpu_sec(svc.proc.pid) - c0
        sig = svc.r.xlen(svc.prefix + "signals")
        rej = svc.r.xlen(svc.prefix + "rejects")
        print(f"[throughput] {n} lines ({len(data) / 1e6:.1f} MB) validated+deduped+published in {dt:.2f} s = "
              f"{n / dt:,.0f} lines/s   (signals {sig}, rejects {rej}; target 20,000/s)")
        print(f"[throughput] ingest process CPU: {cpu:.2f} s = {cpu / n * 1e6:.1f} us/line "
              f"(~{n / cpu:,.0f} lines/s per core when not sharing the CPU with redis and this benchmark; "
              f"{os.cpu_count()} CPUs here)")
        print(f"[rss] after throughput run: {rss_kb(svc.proc.pid) / 1024:.1f} MiB "
              f"(decision log {svc.err.stat().st_size / 1e6:.1f} MB)")
        svc.stop()

        # 3. small vs big log
        results = {}
        for label, size in (("1 KB", 1024), (f"{args.big_gb:g} GB", int(args.big_gb * 1024**3))):
            log = work / f"size-{size}.log"
            with open(log, "wb") as f:
                if size > 4096:
                    f.truncate(size - 4096)   # sparse: instant, the kernel never reads the zeros back
                    f.seek(0, os.SEEK_END)
                    f.write(b"\n")
                while f.tell() < size:
                    f.write(peak(random.randrange(10**8), "2020-01-01T00:00:00Z"))
            size_mb = log.stat().st_size / 1e6
            svc = Service(url, log, work)
            t_boot = json.loads([ln for ln in svc.err.read_bytes().splitlines() if b'"bootstrap"' in ln][0])
            measure_pickup(svc, log, 10)
            lat = measure_pickup(svc, log, args.pickup_lines)
            results[label] = lat
            print(f"[pickup] {label} log ({size_mb:,.3f} MB): p50 {fmt_ms(pct(lat, 50))}  "
                  f"p99 {fmt_ms(pct(lat, 99))}  (bootstrap started at offset {t_boot['offset']:,}); "
                  f"RSS {rss_kb(svc.proc.pid) / 1024:.1f} MiB")
            svc.stop()
            log.unlink()
        (a, la), (b, lb) = results.items()
        print(f"[pickup] ratio p50 {b}/{a} = {statistics.median(lb) / statistics.median(la):.2f}  (should be ~1)")


if __name__ == "__main__":
    main()
