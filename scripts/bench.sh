#!/usr/bin/env bash
# `make bench`: every benchmark, one after the other, each printing its figures and targets.
# Figures are percentiles and ratios from one run on this machine; nothing here asserts a time.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
status=0
run() {
  echo "==== $*"
  "$PY" "$@" || { echo "!!!! $* failed"; status=1; }
  echo
}
[ -f services/paper_exchange/bench_roundtrip.py ] && run -m services.paper_exchange.bench_roundtrip
for b in bench/bench_ingest.py bench/bench_entry.py bench/bench_exits.py; do
  [ -f "$b" ] && run "$b"
done
exit $status
