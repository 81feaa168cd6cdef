#!/usr/bin/env bash
# supervisorctl for the local stack, e.g. `scripts/ctl.sh status`, `scripts/ctl.sh restart position_engine`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
exec "$EXEC_HOME/.venv/bin/supervisorctl" -c "$EXEC_HOME/supervisord.conf" "$@"
