#!/usr/bin/env bash
# `make down`: stop every local stack of this checkout: the one `make up` started (EXEC_RUN_DIR, default var/run)
# and the one `DEMO_KEEP=1 make demo` left running (var/demo). A run directory whose supervisord is gone is
# skipped with a note; exit 0 when nothing is left running.
set -uo pipefail
HOME_DIR="$(cd "$(dirname "$0")/.." && pwd)"
dirs=()
for d in "${EXEC_RUN_DIR:-}" "$HOME_DIR/var/run" "$HOME_DIR/var/demo"; do
  [ -n "$d" ] || continue
  case " ${dirs[*]-} " in *" $d "*) ;; *) dirs+=("$d") ;; esac
done
found=0
rc=0
for d in "${dirs[@]}"; do
  sock="$d/supervisor/supervisor.sock"
  [ -S "$sock" ] || continue
  found=1
  if EXEC_RUN_DIR="$d" bash "$HOME_DIR/scripts/ctl.sh" pid >/dev/null 2>&1; then
    echo "down: stopping the stack in $d"
    pid="$(cat "$d/supervisor/supervisord.pid" 2>/dev/null || true)"
    EXEC_RUN_DIR="$d" bash "$HOME_DIR/scripts/ctl.sh" shutdown || rc=1
    # supervisorctl's shutdown returns at once; supervisord stops its programs after. Wait for it (60 s at most).
    deadline=$((SECONDS + 60))
    while [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.2; done
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then echo "down: supervisord $pid still stopping after 60 s"; rc=1
    else echo "down: $d stopped"; fi
  else
    echo "down: $d has a supervisor socket but no supervisord answers (already stopped)"
  fi
done
[ "$found" = 1 ] || echo "down: no stack running (looked in ${dirs[*]})"
exit "$rc"
