# The README's two commands are `make demo` and `make test`; both bootstrap .venv themselves
# from nothing but Python 3.11, make and a compiler.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: demo test lint audit chaos bench clean

$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

demo: $(STAMP)
	$(BIN)/crmsync demo

# pytest exits 5 when it collects no test, so an empty run fails here instead of passing.
test: $(STAMP)
	$(BIN)/python -m pytest

# ruff's bandit rules ("S") are the security linter. The dependency audit (pip-audit) asks
# a vulnerability database about every installed package: it runs in `make lint` when
# CRMSYNC_AUDIT=1 (and always in `make audit`), fails on a known vulnerability and is skipped,
# saying so, when the database cannot be reached. It is opt-in so that a CVE published
# overnight in some transitive package cannot block every landing unannounced.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	@if [ "$${CRMSYNC_AUDIT:-0}" = "1" ]; then $(BIN)/python -m bench.chaos_audit; \
	else echo "dependency audit: opt-in (CRMSYNC_AUDIT=1 make lint, or make audit)"; fi

audit: $(STAMP)
	$(BIN)/python -m bench.chaos_audit

# The full chaos scenario (1,000 won accounts, every fault; about 4-5 minutes here). Pass
# options with CHAOS_ARGS, e.g. `make chaos CHAOS_ARGS="--seed 7"`; the short version runs in
# `make test` (tests/reliability/test_chaos.py).
chaos: $(STAMP)
	$(BIN)/python -m bench.chaos $(CHAOS_ARGS)

bench: $(STAMP)
	$(BIN)/python -m bench.run

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .crmsync-data
