#!/usr/bin/env bash
# make compose-check: prove that `docker-compose up` works on this host, end to end.
#   1. a Docker engine: the running one, or dockerd started here (Debian's docker.io / docker-compose installed with
#      apt when missing) with --bridge=none --iptables=false --ip-forward=false --ip-masq=false: the stack uses host
#      networking, so the engine needs no bridge, NAT or forwarding and leaves the host's firewall alone;
#   2. the base images (scripts/compose-base-images.sh: present, pulled, or built from Debian's packages), then the
#      executor image, pip trusting the host's CA bundle and using the host pip's index;
#   3. `docker-compose up -d` on free loopback ports, every service's healthcheck passing;
#   4. one PEAK line appended, and the trade protected: its stops resting on the paper exchange for every coin held;
#      /metrics (the metrics container) says so (stop coverage 1), and the dashboard shows the trade behind its token;
#   5. `docker-compose restart exit_manager`: the stops stay on the exchange throughout (polled at 10 Hz inside the
#      paper exchange's container) and after, unchanged, and no other service is restarted;
#   6. `docker-compose down -v`.
# Whatever happens, the trap takes down what it brought up, stops a dockerd it started (one already running is left
# alone), and restores ip_forward and the iptables/nftables rules if they changed. Every wait has a deadline; on
# failure it prints what it waited for and the services' last log lines.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"

# Each step has its own deadline, and all of them together a budget (the typical cold run takes 3 min): a step is
# given at most what is left of the budget; the cleanup after it is bounded too (down -v 180 s, dockerd 60 s).
BUDGET="${COMPOSE_CHECK_BUDGET:-900}"
ENGINE_DEADLINE="${COMPOSE_CHECK_ENGINE_DEADLINE:-90}"
BASE_DEADLINE="${COMPOSE_CHECK_BASE_DEADLINE:-720}"
BUILD_DEADLINE="${COMPOSE_CHECK_BUILD_DEADLINE:-600}"
HEALTH_DEADLINE="${COMPOSE_CHECK_HEALTH_DEADLINE:-180}"
TRADE_DEADLINE="${COMPOSE_CHECK_TRADE_DEADLINE:-120}"
RESTART_DEADLINE="${COMPOSE_CHECK_RESTART_DEADLINE:-120}"
DOWN_DEADLINE="${COMPOSE_CHECK_DOWN_DEADLINE:-180}"
export COMPOSE_PROJECT_NAME="${COMPOSE_CHECK_PROJECT:-executorcheck}"
export COMPOSE_INTERACTIVE_NO_CLI=1

WORK="$(mktemp -d /tmp/compose-check.XXXXXX)"
DOCKERD_PID=""
NETNS_MOUNTED_BEFORE=1
UP=0
T0=$SECONDS
PHASES=()

# min(the step's deadline, what is left of the budget), at least 1 s
cap() { local left=$((T0 + BUDGET - SECONDS)); [ "$left" -lt "$1" ] && echo $((left > 1 ? left : 1)) || echo "$1"; }
say() { printf 'compose-check [%4ds] %s\n' $((SECONDS - T0)) "$*" >&2; }
fail() { say "FAILED: $*"; exit 1; }
dc() { docker-compose --ansi never "$@"; }
phase_done() { PHASES+=("$1 $(($SECONDS - $2))s"); }

# Poll "$@" every second until it succeeds or DEADLINE seconds pass.
wait_for() {
  local deadline=$((SECONDS + $(cap "$1"))) what="$2"; shift 2
  say "waiting up to $((deadline - SECONDS))s for $what"
  until "$@"; do
    if [ "$SECONDS" -ge "$deadline" ]; then
      say "gave up waiting for $what"
      return 1
    fi
    sleep 1
  done
}

# --- the host's forwarding and firewall settings, recorded before and restored after ---------------------------
snapshot_net() {
  local d="$1"
  mkdir -p "$d"
  cat /proc/sys/net/ipv4/ip_forward >"$d/ip_forward"
  cat /proc/sys/net/ipv6/conf/all/forwarding >"$d/ip6_forward" 2>/dev/null || true
  if command -v iptables-save >/dev/null 2>&1; then iptables-save >"$d/iptables.raw" 2>/dev/null || true; fi
  if command -v ip6tables-save >/dev/null 2>&1; then ip6tables-save >"$d/ip6tables.raw" 2>/dev/null || true; fi
  if command -v nft >/dev/null 2>&1; then nft list ruleset >"$d/nft" 2>/dev/null || true; fi
  local f
  for f in "$d"/*.raw; do  # comments carry dates and counters move: compare the rules only
    if [ -f "$f" ]; then { grep -v '^#' "$f" || true; } | sed 's/\[[0-9]*:[0-9]*\]//' >"${f%.raw}"; fi
  done
  return 0
}

restore_net() {
  [ -d "$WORK/net.before" ] || return 0
  snapshot_net "$WORK/net.after"
  local b="$WORK/net.before" a="$WORK/net.after" changed=0
  if ! cmp -s "$b/ip_forward" "$a/ip_forward"; then
    cat "$b/ip_forward" >/proc/sys/net/ipv4/ip_forward; changed=1; say "restored net.ipv4.ip_forward=$(cat "$b/ip_forward")"
  fi
  if [ -f "$b/ip6_forward" ] && ! cmp -s "$b/ip6_forward" "$a/ip6_forward"; then
    cat "$b/ip6_forward" >/proc/sys/net/ipv6/conf/all/forwarding; changed=1; say "restored IPv6 forwarding"
  fi
  if [ -f "$b/nft" ] && ! cmp -s "$b/nft" "$a/nft"; then
    { echo "flush ruleset"; cat "$b/nft"; } | nft -f - && say "restored the nftables ruleset"; changed=1
  elif [ -f "$b/iptables" ] && ! cmp -s "$b/iptables" "$a/iptables"; then
    iptables-restore <"$b/iptables.raw" && say "restored the iptables rules"; changed=1
  fi
  if [ -f "$b/ip6tables" ] && [ ! -f "$b/nft" ] && ! cmp -s "$b/ip6tables" "$a/ip6tables"; then
    ip6tables-restore <"$b/ip6tables.raw" && say "restored the ip6tables rules"; changed=1
  fi
  [ "$changed" = 0 ] && say "host forwarding and firewall rules: unchanged"
  return 0
}

# --- the engine -------------------------------------------------------------------------------------------------
engine_up() { timeout 15 docker info >/dev/null 2>&1; }

ensure_packages() {
  local need=()
  command -v dockerd >/dev/null 2>&1 || need+=(docker.io)
  command -v docker >/dev/null 2>&1 || [ "${#need[@]}" != 0 ] || need+=(docker.io)
  command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
  [ "${#need[@]}" = 0 ] && return 0
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    fail "missing ${need[*]} and cannot install them here (needs root and apt-get): install Docker and docker-compose"
  fi
  say "installing Debian's ${need[*]} (apt-get update first)"
  { timeout "$(cap 300)" apt-get update -qq && DEBIAN_FRONTEND=noninteractive timeout "$(cap 600)" apt-get install -y -qq "${need[@]}"; } \
    >"$WORK/apt.log" 2>&1 || { tail -n 30 "$WORK/apt.log" >&2; fail "could not install ${need[*]} with apt-get"; }
}

dockerd_alive() { [ -n "$DOCKERD_PID" ] && kill -0 "$DOCKERD_PID" 2>/dev/null; }
engine_up_or_dead() { engine_up || ! dockerd_alive; }

start_engine() {
  local was_up=0
  engine_up && was_up=1
  ensure_packages
  snapshot_net "$WORK/net.before"
  if [ "$was_up" = 1 ] || engine_up; then
    say "a Docker engine is already running: using it (and leaving it running)"
    return 0
  fi
  NETNS_MOUNTED_BEFORE=0
  mountpoint -q /run/docker/netns/default 2>/dev/null && NETNS_MOUNTED_BEFORE=1
  say "starting dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false (log: $WORK/dockerd.log)"
  dockerd --bridge=none --iptables=false --ip-forward=false --ip-masq=false --host unix:///var/run/docker.sock \
    >"$WORK/dockerd.log" 2>&1 &
  DOCKERD_PID=$!
  if ! wait_for "$ENGINE_DEADLINE" "the Docker engine (dockerd pid $DOCKERD_PID) to answer" engine_up_or_dead \
      || ! engine_up; then
    say "dockerd log (last 40 lines):"; tail -n 40 "$WORK/dockerd.log" >&2 || true
    fail "the Docker engine could not start: dockerd $(dockerd_alive && echo "did not answer within ${ENGINE_DEADLINE}s" \
      || echo "exited"); compose-check needs a working dockerd (root, cgroups, overlayfs)"
  fi
  say "dockerd $DOCKERD_PID is up ($(docker version -f '{{.Server.Version}}' 2>/dev/null))"
}

stop_engine() {
  dockerd_alive || return 0
  say "stopping the dockerd this check started (pid $DOCKERD_PID)"
  kill -TERM "$DOCKERD_PID" 2>/dev/null || true
  local deadline=$((SECONDS + 60))
  while dockerd_alive && [ "$SECONDS" -lt "$deadline" ]; do sleep 0.5; done
  if dockerd_alive; then say "dockerd did not stop within 60s: killing it"; kill -KILL "$DOCKERD_PID" 2>/dev/null; fi
  wait "$DOCKERD_PID" 2>/dev/null || true
  # dockerd leaves its bind mount of the host's network namespace behind: not there before, so not after.
  if [ "$NETNS_MOUNTED_BEFORE" = 0 ] && mountpoint -q /run/docker/netns/default 2>/dev/null; then
    umount /run/docker/netns/default 2>/dev/null && say "unmounted /run/docker/netns/default (left by dockerd)"
  fi
  return 0
}

# --- the stack --------------------------------------------------------------------------------------------------
show_logs() {
  say "docker-compose ps:"; timeout 60 docker-compose --ansi never ps >&2 || true
  say "docker-compose logs --tail 40:"; timeout 60 docker-compose --ansi never logs --no-color --tail 40 >&2 || true
}

cleanup() {
  local rc=$?
  set +e
  trap - EXIT INT TERM
  if [ "$rc" != 0 ] && [ "$UP" = 1 ]; then show_logs; fi
  if [ "$UP" = 1 ]; then
    say "taking the stack down (docker-compose down -v)"
    timeout "$DOWN_DEADLINE" docker-compose --ansi never down -v --remove-orphans >&2
  fi
  if [ "$rc" != 0 ] && [ "$UP" = 1 ] && [ -n "$DOCKERD_PID" ] && [ -f "$WORK/dockerd.log" ]; then
    say "dockerd log (last 20 lines):"; tail -n 20 "$WORK/dockerd.log" >&2
  fi
  stop_engine
  restore_net
  rm -rf "$WORK"
  if [ "$rc" = 0 ]; then say "OK in $((SECONDS - T0))s (${PHASES[*]})"; else say "FAILED (exit $rc) after $((SECONDS - T0))s"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# The CA bundle the host's pip trusts, and its index, for the build.
prepare_build_inputs() {
  local cert index
  cert="${PIP_CERT:-$(python3 -m pip config get global.cert 2>/dev/null || true)}"
  for c in "$cert" "${REQUESTS_CA_BUNDLE:-}" "${SSL_CERT_FILE:-}" /etc/ssl/certs/ca-certificates.crt; do
    if [ -n "$c" ] && [ -f "$c" ]; then cert="$c"; break; fi
  done
  if [ -f "$cert" ]; then
    cmp -s "$cert" docker/certs/ca-bundle.crt || cp "$cert" docker/certs/ca-bundle.crt
    say "the build trusts the host's CA bundle ($cert)"
  fi
  index="${PIP_INDEX_URL:-$(python3 -m pip config get global.index-url 2>/dev/null || true)}"
  case "$index" in
    http://*|https://*) export EXEC_PIP_INDEX_URL="$index"; say "the build uses the host pip's index $index" ;;
    *) say "the build uses pip's default index (as the host pip does)" ;;
  esac
}

choose_ports_and_data() {
  local ports
  ports=$(python3 -c 'import socket
s = [socket.socket() for _ in range(5)]
[x.bind(("127.0.0.1", 0)) for x in s]
print(" ".join(str(x.getsockname()[1]) for x in s))')
  read -r EXEC_REDIS_PORT PAPER_PORT PAPER_WS_PORT METRICS_PORT DASHBOARD_PORT <<<"$ports"
  export EXEC_REDIS_PORT PAPER_PORT PAPER_WS_PORT METRICS_PORT DASHBOARD_PORT
  DASHBOARD_TOKEN="$(python3 -c 'import secrets; print(secrets.token_hex(16))')"
  export DASHBOARD_TOKEN
  export BINANCE_BASE_URL="http://127.0.0.1:$PAPER_PORT" BINANCE_WS_URL="ws://127.0.0.1:$PAPER_WS_PORT/ws-api/v3"
  export BINANCE_API_KEY=paper-key BINANCE_API_SECRET=paper-secret
  export PAPER_SPEED=0   # the replay holds still: the trade stays open and protected while exit_manager restarts
  if [ -z "${EXEC_MARKET_DIR:-}" ]; then
    if [ -d ../shared/data/market ]; then
      EXEC_MARKET_DIR="$(cd ../shared/data/market && pwd)"
    else
      EXEC_MARKET_DIR="$WORK/market-none"; mkdir -p "$EXEC_MARKET_DIR"
    fi
  fi
  export EXEC_MARKET_DIR
  say "ports: redis $EXEC_REDIS_PORT, paper exchange $PAPER_PORT (ws $PAPER_WS_PORT), metrics $METRICS_PORT," \
      "dashboard $DASHBOARD_PORT; market data folder $EXEC_MARKET_DIR"
}

all_healthy() {
  local ids want
  want=$(dc config --services | wc -l)
  ids=$(dc ps -q)
  [ -n "$ids" ] || return 1
  # shellcheck disable=SC2086
  docker inspect -f '{{.Name}} {{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{else}}no-healthcheck{{end}}' \
    $ids >"$WORK/health" 2>/dev/null || return 1
  [ "$(wc -l <"$WORK/health")" = "$want" ] && ! grep -qv ' running healthy$' "$WORK/health"
}

probe() { docker exec -i "$PE_CID" python - "$@" <scripts/compose_probe.py; }
# /metrics (host networking: the metrics container's loopback port) says every held coin is covered by a stop.
metrics_covered() {
  curl -sf --max-time 10 "http://127.0.0.1:$METRICS_PORT/metrics" >"$WORK/metrics" 2>/dev/null \
    && grep -q '^executor_position_stop_coverage_ratio 1.0$' "$WORK/metrics" \
    && grep -q '^executor_position_phase{phase="OPEN_FILLED"} 1.0$' "$WORK/metrics" \
    && grep -q '^executor_unprotected_seconds 0.0$' "$WORK/metrics"
}
# The dashboard refuses a request without its token and shows the trade's three legs with it.
dashboard_shows_trade() {
  [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 10 "http://127.0.0.1:$DASHBOARD_PORT/api/document")" = 401 ] \
    && curl -sf --max-time 20 -H "Authorization: Bearer $DASHBOARD_TOKEN" \
         "http://127.0.0.1:$DASHBOARD_PORT/api/document" >"$WORK/dashboard.json" \
    && python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); p=d["position"]; sys.exit(0 if p and len([l for l in p["legs"] if l["status"]=="PLACED"])==3 else 1)' "$WORK/dashboard.json"
}
protected() { probe stops >"$WORK/stops" 2>&1; }
started_at() { docker inspect -f '{{.Name}} {{.State.StartedAt}}' "$@"; }
restarted_ready() {  # a new start time, "exit_manager_ready" logged since it, and the healthcheck passing again
  local now
  now=$(docker inspect -f '{{.State.StartedAt}}' "$EM_CID")
  [ "$now" != "$EM_STARTED" ] \
    && docker logs --since "$now" "$EM_CID" 2>&1 | grep -q '"event":"exit_manager_ready"' \
    && [ "$(docker inspect -f '{{.State.Health.Status}}' "$EM_CID")" = healthy ]
}

main() {
  local t
  say "checking docker-compose.yml end to end (project $COMPOSE_PROJECT_NAME)"
  t=$SECONDS; start_engine; phase_done engine "$t"

  t=$SECONDS
  DEBOOTSTRAP_DEADLINE=$(cap 600) timeout "$(cap "$BASE_DEADLINE")" bash scripts/compose-base-images.sh \
    || fail "the base images (python:3.11-slim, redis:7) are neither here, nor pullable, nor buildable (see above)"
  phase_done base-images "$t"
  t=$SECONDS
  # the stack's credentials (generated once, kept): each service's env file and the redis service's aclfile
  "${EXEC_PYTHON:-.venv/bin/python}" -m shared.adapters.credentials compose-env --out var/secrets/compose \
    || fail "could not write the compose credentials under var/secrets/compose (run make setup first)"
  prepare_build_inputs
  say "building the executor image (docker-compose build; log $WORK/build.log; deadline ${BUILD_DEADLINE}s)"
  if ! timeout "$(cap "$BUILD_DEADLINE")" docker-compose --ansi never build paper_exchange >"$WORK/build.log" 2>&1; then
    tail -n 40 "$WORK/build.log" >&2; fail "docker-compose build failed or passed its deadline (${BUILD_DEADLINE}s, or the budget's ${BUDGET}s)"
  fi
  phase_done build "$t"

  t=$SECONDS
  timeout "$DOWN_DEADLINE" docker-compose --ansi never down -v --remove-orphans >/dev/null 2>&1 || true  # a killed run's
  choose_ports_and_data
  UP=1
  timeout "$(cap 300)" docker-compose --ansi never up -d --no-build || fail "docker-compose up -d failed"
  wait_for "$HEALTH_DEADLINE" "every service's healthcheck to pass" all_healthy \
    || { cat "$WORK/health" >&2; fail "not every service became healthy within ${HEALTH_DEADLINE}s"; }
  say "all $(wc -l <"$WORK/health") services healthy"
  phase_done up+healthy "$t"

  t=$SECONDS
  PE_CID=$(dc ps -q paper_exchange); EM_CID=$(dc ps -q exit_manager)
  wait_for 60 "the replay clock, then the PEAK line appended" probe peak \
    || fail "could not append the PEAK line (no replay clock in Redis?)"
  wait_for "$TRADE_DEADLINE" "the trade's stops resting on the exchange for every coin held" protected \
    || { cat "$WORK/stops" >&2; fail "the trade was not protected within ${TRADE_DEADLINE}s"; }
  sed 's/^/    /' "$WORK/stops" >&2
  wait_for 30 "/metrics to report the trade covered (coverage ratio 1, nothing unprotected)" metrics_covered \
    || { grep -E '^executor_(position|unprotected)' "$WORK/metrics" >&2; fail "/metrics did not report the protected trade"; }
  wait_for 30 "the dashboard to refuse no token and show the trade's three legs with it" dashboard_shows_trade \
    || fail "the dashboard did not show the trade (or let a request without the token in)"
  say "/metrics and the dashboard show the protected trade"
  phase_done trade "$t"

  t=$SECONDS
  local others before
  others=$(dc ps -q | grep -v "^$EM_CID")
  # shellcheck disable=SC2086
  before=$(started_at $others)
  EM_STARTED=$(docker inspect -f '{{.State.StartedAt}}' "$EM_CID")
  docker exec "$PE_CID" rm -f /tmp/compose-check.watch-end
  probe watch /tmp/compose-check.watch-end >"$WORK/watch" 2>&1 &
  local watcher=$!
  say "docker-compose restart exit_manager (the stops are watched at 10 Hz meanwhile)"
  timeout "$(cap "$RESTART_DEADLINE")" docker-compose --ansi never restart -t 30 exit_manager \
    || fail "docker-compose restart exit_manager failed or passed ${RESTART_DEADLINE}s"
  wait_for "$RESTART_DEADLINE" "the restarted exit_manager to be ready (exit_manager_ready logged, healthy)" \
    restarted_ready || fail "exit_manager did not come back ready within ${RESTART_DEADLINE}s"
  docker exec "$PE_CID" touch /tmp/compose-check.watch-end
  wait "$watcher" || { cat "$WORK/watch" >&2; fail "the stops did not stay on the exchange while exit_manager restarted"; }
  say "during the restart: $(tail -n 1 "$WORK/watch")"
  cp "$WORK/stops" "$WORK/stops.before"
  protected || { cat "$WORK/stops" >&2; fail "the trade is not protected after exit_manager restarted"; }
  cmp -s "$WORK/stops.before" "$WORK/stops" \
    || { diff "$WORK/stops.before" "$WORK/stops" >&2; fail "the stops changed across the restart"; }
  say "after the restart: the same stops rest on the exchange"
  # shellcheck disable=SC2086
  [ "$(started_at $others)" = "$before" ] || fail "another service was restarted along with exit_manager"
  all_healthy || { cat "$WORK/health" >&2; fail "not every service is healthy after the restart"; }
  say "the other $(echo "$others" | wc -l) services kept running (same start times), all healthy"
  phase_done restart "$t"

  t=$SECONDS
  say "docker-compose down -v"
  timeout "$DOWN_DEADLINE" docker-compose --ansi never down -v --remove-orphans || fail "docker-compose down -v failed"
  UP=0
  [ -z "$(docker ps -aq --filter "label=com.docker.compose.project=$COMPOSE_PROJECT_NAME")" ] \
    || fail "containers of $COMPOSE_PROJECT_NAME are left after down -v"
  phase_done down "$t"
}

main "$@"
