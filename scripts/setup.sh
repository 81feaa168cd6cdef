#!/usr/bin/env bash
# Fresh-machine setup: a virtual environment with the pinned dependencies, and a redis-server.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
if ! "$PY" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
  echo "setup: Python 3.11+ is required (found: $("$PY" --version 2>&1)). Install python3.11 and re-run." >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
if [ ! -f .venv/.installed ] || [ pyproject.toml -nt .venv/.installed ]; then
  .venv/bin/pip install --quiet --disable-pip-version-check -e '.[test]'
  touch .venv/.installed
fi
if ! command -v redis-server >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian's redis-server" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    echo "setup: redis-server not found. Install it (Debian/Ubuntu: sudo apt-get install redis-server;" \
         "macOS: brew install redis) or put a redis-server binary on PATH, then re-run." >&2
    exit 1
  fi
fi
# The stack's Redis credentials: one random password per ACL user under var/secrets/redis (700/600, git- and
# docker-ignored), generated once and never rotated by a re-run (shared/adapters/credentials.py).
.venv/bin/python -m shared.adapters.credentials init
# docker-compose.yml's: each service's env file (its own user) and the redis service's aclfile, in var/secrets/compose
.venv/bin/python -m shared.adapters.credentials compose-env --out var/secrets/compose
# The dashboard's browser test (tests/test_dashboard_browser.py) drives Debian's chromium through chromedriver.
if ! command -v chromium >/dev/null 2>&1 || ! command -v chromedriver >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "setup: installing Debian's chromium and chromium-driver (the dashboard's browser test)" >&2
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
  else
    echo "setup: chromium/chromedriver not found: the dashboard's browser test will be skipped" \
         "(Debian/Ubuntu: sudo apt-get install chromium chromium-driver)" >&2
  fi
fi
