# Two commands do all set-up: `make run` and `make test`. Both create .venv and install what is missing.
# `make run` starts the whole dev stack (embedded PostgreSQL and Temporal unless TAFLOW_DATABASE_URL /
# TAFLOW_TEMPORAL_ADDRESS are set; data in .data/); Ctrl-C stops it.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
PYTEST := $(BIN)/python -m pytest -p no:cacheprovider

.PHONY: run test lint typecheck unit bench drills clean

$(BIN)/python:
	@$(PY) -c 'import sys; sys.exit(sys.version_info < (3, 11))' || \
		{ echo "TAflow needs Python >= 3.11: run e.g. 'make PY=python3.11 $(MAKECMDGOALS)'" >&2; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# Reinstalled whenever pyproject.toml changes; the stamp is written only after a successful install.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

run: $(STAMP)
	$(BIN)/taflow dev

lint: $(STAMP)
	$(BIN)/ruff check taflow tests benchmarks
	$(BIN)/ruff format --check taflow tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy

test: $(STAMP) lint typecheck
	$(PYTEST) -q

unit: $(STAMP)
	$(PYTEST) -q tests/unit

# Not part of `make test`. Writes benchmarks/RESULTS.md (see docs/benchmarks.md); BENCH_SCALE=0.2 for a quick pass.
bench: $(STAMP)
	$(BIN)/python -m benchmarks

# Fault drills against a throw-away stack (own PostgreSQL, Temporal, worker, API on free loopback ports);
# `make test` runs their short form (tests/drills). DRILLS_ARGS, e.g. "-n 50 worker-kill".
drills: $(STAMP)
	$(BIN)/python -m taflow.drills $(DRILLS_ARGS)

clean:
	rm -rf $(VENV) .data .mypy_cache .ruff_cache
