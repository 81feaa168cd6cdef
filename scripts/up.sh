#!/usr/bin/env bash
# Start the whole stack under supervisord (daemonised). Stop with `scripts/ctl.sh shutdown`.
set -euo pipefail
source "$(dirname "$0")/env.sh"
exec "$EXEC_HOME/.venv/bin/supervisord" -c "$EXEC_HOME/supervisord.conf"
