# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
.PHONY: setup demo test bench up ctl down chaos chaos-short compose-check

setup:
	@bash scripts/setup.sh

demo: setup
	@export EXEC_RUN_DIR="$(CURDIR)/var/demo" && source scripts/env.sh && .venv/bin/python -m services.demo

test: setup
	@.venv/bin/python -m pytest -q

bench: setup
	@bash scripts/bench.sh

up: setup
	@bash scripts/up.sh

ctl:
	@bash scripts/ctl.sh $(ARGS)

down:
	@bash scripts/down.sh

# Proof under fire (chaos/README.md): kill -9 of every process, exchange faults, corrupted inputs; exit 1 on
# any violation. SEED=n replays a run; `make chaos` is long (about 12 min), `make chaos-short` about 2 min.
SEED ?= 1
chaos: setup
	@.venv/bin/python -m chaos --seed $(SEED) $(CHAOS_ARGS)

chaos-short: setup
	@.venv/bin/python -m chaos --short --seed $(SEED) $(CHAOS_ARGS)

# docker-compose.yml end to end (README "Docker Compose"): engine (started if none runs), images, up, healthy,
# one protected trade, exit_manager restarted with its stops kept, down -v. About 45 s warm, 3 min cold.
compose-check:
	@bash scripts/compose-check.sh
