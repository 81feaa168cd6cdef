# Defaults for running the whole stack on this host (sourced by the other scripts).
# Every variable can be overridden from the environment; see the README's settings table.
EXEC_HOME="${EXEC_HOME:-$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)}"
export EXEC_HOME
export EXEC_RUN_DIR="${EXEC_RUN_DIR:-$EXEC_HOME/var/run}"
export EXEC_PYTHON="${EXEC_PYTHON:-$EXEC_HOME/.venv/bin/python}"
export EXEC_REDIS_PORT="${EXEC_REDIS_PORT:-6390}"
export EXEC_REDIS_SERVER="${EXEC_REDIS_SERVER:-$(command -v redis-server || echo /usr/bin/redis-server)}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:$EXEC_REDIS_PORT/0}"
# The stack's Redis credentials (one password per ACL user, 600, generated once by `make setup`); each process
# reads only its own. The URLs below are for the operator's shell (the README's redis-cli lines, executorctl):
# scripts/up.sh keeps them out of the stack's processes.
export EXEC_SECRETS_DIR="${EXEC_SECRETS_DIR:-$EXEC_HOME/var/secrets}"
for _user in viewer operator; do
  if [ -r "$EXEC_SECRETS_DIR/redis/$_user" ] && [[ "$REDIS_URL" != *@* ]]; then
    export "REDIS_${_user^^}_URL=${REDIS_URL/:\/\//://$_user:$(cat "$EXEC_SECRETS_DIR/redis/$_user")@}"
  fi
done
unset _user
export EXEC_PREFIX="${EXEC_PREFIX:-exec:}"
export PAPER_PORT="${PAPER_PORT:-8899}"
export BINANCE_BASE_URL="${BINANCE_BASE_URL:-http://127.0.0.1:$PAPER_PORT}"
export PAPER_WS_PORT="${PAPER_WS_PORT:-$((PAPER_PORT + 1))}"
export BINANCE_WS_URL="${BINANCE_WS_URL:-ws://127.0.0.1:$PAPER_WS_PORT/ws-api/v3}"
export BINANCE_API_KEY="${BINANCE_API_KEY:-paper-key}"
export BINANCE_API_SECRET="${BINANCE_API_SECRET:-paper-secret}"
export PAPER_API_KEY="${PAPER_API_KEY:-$BINANCE_API_KEY}"
export PAPER_API_SECRET="${PAPER_API_SECRET:-$BINANCE_API_SECRET}"
export PAPER_STATE_FN="${PAPER_STATE_FN:-$EXEC_RUN_DIR/paper/paper_exchange.json}"
export PAPER_CLOCK_REDIS_URL="${PAPER_CLOCK_REDIS_URL:-$REDIS_URL}"
# the replay clock belongs to the local paper exchange; any other exchange runs on the wall clock (issue 21)
case "$BINANCE_BASE_URL" in
  http://127.*|https://127.*|http://localhost[:/]*|http://localhost|http://\[::1\]*) export CLOCK="${CLOCK:-replay}" ;;
  *) export CLOCK="${CLOCK:-wall}" ;;
esac
export DELTASCOUT_LOG="${DELTASCOUT_LOG:-$EXEC_RUN_DIR/logs/deltascout.log}"
export AGG_CSV="${AGG_CSV:-$EXEC_RUN_DIR/feed/aggregated.csv}"
export PAPER_FEED_CSV="${PAPER_FEED_CSV:-$AGG_CSV}"
export STATE_FN="${STATE_FN:-$EXEC_RUN_DIR/state/executor_state.json}"
export EXEC_LOG="${EXEC_LOG:-$EXEC_RUN_DIR/logs/executor.log}"
mkdir -p "$EXEC_RUN_DIR"/{logs,feed,state,paper,redis,supervisor}
