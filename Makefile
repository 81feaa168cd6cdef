# The two commands of the README: `make demo` and `make test`.
SHELL := /bin/bash
.PHONY: setup demo test bench up ctl down

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
	@bash scripts/ctl.sh shutdown
