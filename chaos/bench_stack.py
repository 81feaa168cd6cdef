"""Benchmark of a running stack: RSS of each process and Redis' used_memory after a long, fast replay with
the streams trimmed (STREAM_MAXLEN small), fed with a flood of PEAK lines (most refused: position open,
cooldown) and garbage, so that every stream outgrows its cap. Prints figures; asserts nothing.

    .venv/bin/python -m chaos.bench_stack [--seconds 60] [--speed 600] [--maxlen 2000] [--lines-per-sec 100]

Last line: `BENCH_STACK {json}` (rss_mib per process, used_memory_mib, stream lengths).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from chaos.procs import HOME, SERVICES, ChaosStack, free_port
from chaos.run import build_env
from shared.adapters.market_files import find_market_file, load_bars


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return -1.0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--speed", type=float, default=600.0)
    ap.add_argument("--maxlen", type=int, default=2000)
    ap.add_argument("--lines-per-sec", type=float, default=100.0)
    a = ap.parse_args()
    market, label = find_market_file(HOME.parent / "shared" / "data" / "market", HOME / "var" / "market")
    bars, _bad = load_bars(market)
    rd = HOME / "var" / "bench-stack"
    if rd.exists():
        shutil.rmtree(rd)
    rd.mkdir(parents=True)
    rp, pp = free_port(), free_port()
    env = build_env(rd, market, rp, pp, STREAM_MAXLEN=str(a.maxlen), PAPER_START_TS=str(bars[500].ts))
    st = ChaosStack(rd, env, rp, pp, SERVICES)
    log = Path(env["DELTASCOUT_LOG"])
    log.touch()
    n_lines = 0
    try:
        st.start_all()
        st.admin("/speed", {"speed": a.speed})
        t0 = time.monotonic()
        i = 0
        while time.monotonic() - t0 < a.seconds:
            market_ms = int(st.r.get("chaos:clock") or 0)
            ts = datetime.fromtimestamp(market_ms / 1000, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            last = float(st.admin("/state")["last"])
            chunk = []
            for _ in range(max(1, int(a.lines_per_sec / 4))):
                i += 1
                if i % 10 == 0:
                    chunk.append(f"garbage line {i}\n")
                else:
                    chunk.append(json.dumps({"ts": ts, "action": "PEAK", "source": "DeltaScout", "kind": "long",
                                             "price": round(last + (i % 997) * 0.1, 2), "delta": 1.0, "vol": 2.0,
                                             "imb": 0.5}) + "\n")
            with open(log, "a") as fh:
                fh.write("".join(chunk))
            n_lines += len(chunk)
            time.sleep(0.25)
        time.sleep(2)
        rss = {name: round(rss_mib(pid), 1) for name, pid in sorted(st.pids().items())}
        mem = st.r.info("memory")
        streams = {k: st.r.xlen(f"chaos:{k}") for k in ("signals", "rejects", "events", "positions", "orders", "alerts")
                   if st.r.exists(f"chaos:{k}")}
        market_s = (int(st.r.get("chaos:clock") or 0) / 1000) - bars[500].ts
    finally:
        st.stop_all()
    print(f"stack ran {a.seconds:g} s wall at {a.speed:g}x ({market_s / 3600:.1f} market hours of {label}); "
          f"{n_lines} lines appended; STREAM_MAXLEN={a.maxlen}")
    for name, v in rss.items():
        print(f"[rss] {name:<16} {v:7.1f} MiB")
    used = mem["used_memory"] / 2**20
    print(f"[redis] used_memory {used:.1f} MiB (peak {mem['used_memory_peak'] / 2**20:.1f} MiB); stream lengths "
          + ", ".join(f"{k} {n}" for k, n in streams.items()))
    print("BENCH_STACK " + json.dumps({"rss_mib": rss, "used_memory_mib": round(used, 2), "streams": streams,
                                       "lines": n_lines, "maxlen": a.maxlen, "seconds": a.seconds}))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONPATH", str(HOME))
    main()
