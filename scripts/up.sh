#!/usr/bin/env bash
# Start the whole stack under supervisord (daemonised). Stop with `scripts/ctl.sh shutdown`.
# Redis starts closed (the aclfile of EXEC_PREFIX's users, from the credentials under EXEC_SECRETS_DIR); the Binance
# keys and the webhook password are moved to EXEC_RUN_DIR/secrets/stack.env (600) and out of supervisord's
# environment, so only the processes that need them read them (shared/adapters/credentials.py).
set -euo pipefail
source "$(dirname "$0")/env.sh"
exec "$EXEC_PYTHON" -m shared.adapters.credentials supervisord
