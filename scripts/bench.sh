#!/usr/bin/env bash
# `make bench`: every benchmark, one after the other, each printing its figures; then ONE summary table of the
# figures side by side, each with its target and whether this run met it. Figures are percentiles and ratios
# from one run on this machine (2 shared vCPUs): a missed target is reported, not failed on.
# The exit status is non-zero only when a benchmark script itself failed.
#
#   bash scripts/bench.sh                 # everything (about 10 min)
#   BENCH_STACK_SEC=30 bash scripts/bench.sh
#
# Targets (T_*) can be overridden from the environment. Where the benchmark script prints its own target it is
# used as is (ingest latency and throughput, paper round trip); the others are set here:
#   signal XADD -> entry order received    p99 < 5 ms       (issue 5; the original product polls every 5 s)
#   log line -> entry order received       p99 < 10 ms      (issue 5)
#   entry fill -> first stop on exchange   p99 < 250 ms     ("never longer than a retry"; REST_POLL_MS=50)
#   stop-move window (cancel -> new stop)  p99 < 100 ms
#   RSS of each process of the stack      < 150 MiB
#   Redis used_memory, streams trimmed     < 64 MiB
#   a whole day of minute bars, replayed   < 60 s wall      (issue 16; lock-step clock, --speed max)
#   28 days of minute bars, replayed       < 600 s wall     (issue 25; the 30-day file, RSS and Redis printed)
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
OUT="$(mktemp -d "${TMPDIR:-/tmp}/bench.XXXXXX")"
status=0
run() {  # run NAME ARGS...: print, keep the output for the summary
  local name="$1"; shift
  echo "==== $*"
  "$PY" "$@" 2>&1 | tee "$OUT/$name.out"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" != 0 ]; then echo "!!!! $* failed (exit $rc)"; echo "FAILED rc=$rc" >> "$OUT/$name.out"; status=1; fi
  echo
}
[ -f services/paper_exchange/bench_roundtrip.py ] && run roundtrip -m services.paper_exchange.bench_roundtrip
run plans bench/plan_stats.py   # the plans the rules make on the market data (issue 13)
for b in ingest entry exits; do
  [ -f "bench/bench_$b.py" ] && run "$b" "bench/bench_$b.py"
done
# a whole day through executorctl replay at max (issue 16)
run replay bench/bench_replay.py
# two busy days of the 30-day file (16 trades) at max, then playing every point singly: the quiet jumps' gain and
# the same trades (issue 25)
run jumps bench/bench_replay.py --month --days 2 --check-jumps
# the trading path with the operator's window open (issue 24): /metrics scraped every second + the dashboard in a
# headless chromium, against nothing watching, in alternating blocks of one run
[ -f bench/bench_window.py ] && run window bench/bench_window.py
[ -f chaos/bench_stack.py ] && run stack -m chaos.bench_stack --seconds "${BENCH_STACK_SEC:-90}"
# a month of real bars through executorctl replay (issue 25): 28 days, wall time, trades, memory (~1 min)
[ "${BENCH_MONTH:-1}" = 1 ] && run month bench/bench_replay.py --month
# a sweep of 8 two-day replays on 1 then 2 rq workers (issue 25; a few minutes; BENCH_SWEEP=0 leaves it out)
[ "${BENCH_SWEEP:-1}" = 1 ] && run sweep bench/bench_sweep.py

"$PY" - "$OUT" <<'PYEOF'
import json, os, re, sys
from pathlib import Path

out = Path(sys.argv[1])
T = {k: float(os.environ.get(k, v)) for k, v in {
    "T_LINE_SIGNAL_P99_MS": 5, "T_THROUGHPUT_LPS": 20000, "T_TAIL_RATIO": 2, "T_SIGNAL_ORDER_P99_MS": 5, "T_LINE_ORDER_P99_MS": 10,
    "T_FILL_STOP_P99_MS": 250, "T_STOP_MOVE_P99_MS": 100, "T_RSS_MIB": 150, "T_REDIS_MIB": 64,
    "T_ROUNDTRIP_P50_MS": 2, "T_REPLAY_DAY_SEC": 60, "T_REPLAY_MONTH_SEC": 600}.items()}


def text(name):
    p = out / f"{name}.out"
    return p.read_text(errors="replace") if p.exists() else None


rows = []  # (figure, value, target, verdict)


def add(fig, value, target, ok):
    rows.append((fig, value, target, "n/a" if ok is None else ("met" if ok else "MISSED")))


def na(fig, target, why="not available"):
    rows.append((fig, why, target, "n/a"))


def num(s):
    return float(s.replace(",", ""))


# line -> signal, throughput, tail cost (bench_ingest)
t = text("ingest")
tgt = f"p99 < {T['T_LINE_SIGNAL_P99_MS']:g} ms"
m = t and re.search(r"\[latency\].*?p50 ([\d.]+) ms.*?p99 ([\d.]+) ms", t)
if m:
    add("line -> signal (ingest)", f"p50 {m[1]} ms, p99 {m[2]} ms", tgt, num(m[2]) < T["T_LINE_SIGNAL_P99_MS"])
else:
    na("line -> signal (ingest)", tgt)
m = t and re.search(r"\[throughput\] (\d+) lines .*?= ([\d,]+) lines/s", t)
tgt = f">= {T['T_THROUGHPUT_LPS']:,.0f} lines/s"
if m:
    add("ingest throughput", f"{m[2]} lines/s ({m[1]} lines)", tgt, num(m[2]) >= T["T_THROUGHPUT_LPS"])
else:
    na("ingest throughput", tgt)
tgt = f"p50 ratio <= {T['T_TAIL_RATIO']:g} (~1)"
pk = t and re.findall(r"\[pickup\] (.+?) log \(.*?\): p50 ([\d.]+) ms\s+p99 ([\d.]+) ms", t)
m = t and re.search(r"\[pickup\] ratio p50 .*? = ([\d.]+)", t)
if pk and m:
    add("tail cost: new line, 1 KB vs 1 GB log", " vs ".join(f"{a}: p50 {b} ms" for a, b, _c in pk) + f" (x{m[1]})",
        tgt, num(m[1]) <= T["T_TAIL_RATIO"])
else:
    na("tail cost: new line, 1 KB vs 1 GB log", tgt)

# signal -> order (bench_entry): the verdict is on "order received" (the wall time the paper exchange had read
# the POST), the issue's figure; the engine's POST start and the reply are shown beside it.
t = text("entry")
for label in ("XADD signals -> entry order", "deltascout.log line -> entry order"):
    key = "T_SIGNAL_ORDER_P99_MS" if label.startswith("XADD") else "T_LINE_ORDER_P99_MS"
    tgt = f"p99 < {T[key]:g} ms"
    pat = (re.escape(label) + r".*?\n\s*-> POST starts\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms.*?\n"
           r"\s*-> order received\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms.*?\n"
           r"\s*-> exchange reply\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms")
    m = t and re.search(pat, t)
    fig = "signal -> entry order (bench_entry)" if label.startswith("XADD") else "log line -> entry order (bench_entry)"
    if m:
        add(fig, f"received p50 {m[3]} ms, p99 {m[4]} ms (sent p99 {m[2]}, reply p99 {m[6]})", tgt,
            num(m[4]) < T[key])
    elif t is None:
        na(fig, tgt)
    else:
        na(fig, tgt, "output not recognised" if "FAILED" not in t else "benchmark failed")

# fill -> stop, stop-move window (bench_exits)
t = text("exits")
for label, fig, key in (("unprotected window: fill -> first stop", "entry fill -> first stop (bench_exits)", "T_FILL_STOP_P99_MS"),
                        ("stop-move window, OCO cancel + place", "stop-move window, OCO (bench_exits)", "T_STOP_MOVE_P99_MS"),
                        ("stop-move window, trail cancelReplace", "stop-move window, trail (bench_exits)", "T_STOP_MOVE_P99_MS")):
    tgt = f"p99 < {T[key]:g} ms"
    m = t and re.search(re.escape(label) + r"\s+n=(\d+)\s+p50=\s*([\d.]+) ms\s+p99=\s*([\d.]+) ms", t)
    if m:
        add(fig, f"p50 {m[2]} ms, p99 {m[3]} ms (n={m[1]})", tgt, num(m[3]) < T[key])
    elif t is None:
        na(fig, tgt)
    else:
        na(fig, tgt, "no samples" if t and label in t else ("benchmark failed" if "FAILED" in t else "output not recognised"))

# RSS and Redis memory of a running stack (chaos/bench_stack.py)
t = text("stack")
m = t and re.search(r"^BENCH_STACK (.*)$", t, re.M)
if m:
    d = json.loads(m[1])
    for name, v in d["rss_mib"].items():
        add(f"RSS {name}", f"{v:.1f} MiB", f"< {T['T_RSS_MIB']:g} MiB", v < T["T_RSS_MIB"])
    add("Redis used_memory, streams trimmed", f"{d['used_memory_mib']:.1f} MiB after {d['lines']} lines "
        f"(MAXLEN {d['maxlen']})", f"< {T['T_REDIS_MIB']:g} MiB", d["used_memory_mib"] < T["T_REDIS_MIB"])
else:
    na("RSS of each process / Redis memory", f"< {T['T_RSS_MIB']:g} MiB / < {T['T_REDIS_MIB']:g} MiB")

# the paper exchange's order round trip
t = text("roundtrip")
tgt = f"p50 < {T['T_ROUNDTRIP_P50_MS']:g} ms"
found = t and re.findall(r"(PAPER_FSYNC=\d) .*?p50 ([\d.]+) ms, p99 ([\d.]+) ms", t)
if found:
    for mode, p50, p99 in found:
        add(f"paper order round trip, {mode}", f"p50 {p50} ms, p99 {p99} ms", tgt, num(p50) < T["T_ROUNDTRIP_P50_MS"])
else:
    na("paper order round trip", tgt)

# a whole day of real minute bars through executorctl replay, lock-step, fastest speed (bench_replay)
t = text("replay")
tgt = f"< {T['T_REPLAY_DAY_SEC']:g} s wall"
m = t and re.search(r"FIGURE replay_day_wall_sec=([\d.]+)", t)
if m:
    add("replay of a whole day (lock-step, max)", f"{m[1]} s", tgt, num(m[1]) < T["T_REPLAY_DAY_SEC"])
else:
    na("replay of a whole day (lock-step, max)", tgt)
t = text("jumps")
m = t and re.search(r"FIGURE quiet_jumps_sec=([\d.]+) every_point_sec=([\d.]+) ratio=([\d.]+)", t)
mm = t and re.search(r"FIGURE identical_trades=(\w+) identical_signal_outcomes=(\w+) \(max vs every point\)", t)
if m and mm:
    add("2-day replay: quiet jumps vs every point", f"{m[1]} s vs {m[2]} s (x{m[3]})", "identical trades",
        mm[1] == "True" and mm[2] == "True")

# the entry path with the operator's window open vs nothing watching (bench_window)
t = text("window")
tgt = "about unchanged"
m = t and re.search(r"before: .*?-> order received\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms.*?after: .*?"
                    r"-> order received\s+p50\s+([\d.]+) ms\s+p99\s+([\d.]+) ms", t, re.S)
if m:
    add("signal -> order, window open (bench_window)", f"received p50 {m[1]} -> {m[3]} ms, p99 {m[2]} -> {m[4]} ms",
        tgt, None)
else:
    na("signal -> order, window open (bench_window)", tgt)
# 28 days of the 30-day file through executorctl replay, fastest speed (bench_replay --month)
t = text("month")
tgt = f"< {T['T_REPLAY_MONTH_SEC']:g} s wall"
m = t and re.search(r"FIGURE replay_month_wall_sec=([\d.]+) trades=(\d+)", t)
if m:
    add(f"replay of 28 days (lock-step, max, {m[2]} trades)", f"{m[1]} s", tgt, num(m[1]) < T["T_REPLAY_MONTH_SEC"])
    mm = re.search(r"FIGURE replay_rss_peak_mib=([\d.]+) replay_redis_peak_mib=([\d.]+)", t)
    if mm:
        add("month replay: peak RSS of any process", f"{mm[1]} MiB", f"< {T['T_RSS_MIB']:g} MiB",
            num(mm[1]) < T["T_RSS_MIB"])
        add("month replay: Redis used_memory peak", f"{mm[2]} MiB", f"< {T['T_REDIS_MIB']:g} MiB",
            num(mm[2]) < T["T_REDIS_MIB"])
elif t is not None:
    na("replay of 28 days (lock-step, max)", tgt)
t = text("sweep")
m = t and re.search(r"FIGURE sweep_1_worker_sec=([\d.]+) sweep_2_workers_sec=([\d.]+) scaling=([\d.]+) "
                    r"identical=(\w+)", t)
if m:
    add("sweep of 8 two-day replays, 1 / 2 workers", f"{m[1]} s / {m[2]} s (x{m[3]})", "identical tables",
        m[4] == "True")

w = [max(len(r[i]) for r in rows + [("figure", "value", "target", "verdict")]) for i in range(4)]
line = "  ".join(f"{{:<{x}}}" for x in w)
print("=" * (sum(w) + 6))
print("BENCH SUMMARY (one run, this machine)")
print(line.format("figure", "value", "target", "verdict"))
print(line.format(*("-" * x for x in w)))
for r in rows:
    print(line.format(*r))
print(f"targets met: {sum(r[3] == 'met' for r in rows)}, missed: {sum(r[3] == 'MISSED' for r in rows)}, "
      f"not available: {sum(r[3] == 'n/a' for r in rows)}")
PYEOF
rm -rf "$OUT"
exit $status
