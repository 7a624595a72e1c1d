# Worker service.  `make run` runs it on embedded defaults; `make test` runs the tests.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-fast lint bench profile chaos migrate check clean venv

venv: $(STAMP)

$(STAMP): setup.cfg pyproject.toml worker-contracts/pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ./worker-contracts
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@touch $(STAMP)

run: $(STAMP)
	@bash scripts/run.sh

# Integration tests run on $(PYTEST_WORKERS) pytest-xdist workers, one test file each at a time (each worker has
# its own Redis database; tests share no other state).  PYTEST_WORKERS=0 runs them in one process.
PYTEST_WORKERS ?= 2

test: $(STAMP)
	@bash scripts/test.sh -n $(PYTEST_WORKERS) --dist loadfile

# The unit layer only (no services, no worker processes): under a minute.
test-fast: $(STAMP)
	@bash scripts/test.sh -m "not integration"

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

migrate: $(STAMP)
	$(BIN)/worker migrate

check: $(STAMP)
	$(BIN)/worker check

bench: $(STAMP)
	@bash scripts/with-redis.sh $(BIN)/python -m benchmarks

profile: $(STAMP)
	@bash scripts/with-redis.sh $(BIN)/python -m benchmarks.profile

chaos: $(STAMP)
	@CHAOS_FULL=1 bash scripts/with-redis.sh $(BIN)/python -m pytest -ra -s \
		tests/integration/test_lifecycle.py::test_chaos_sigkill_every_few_seconds_loses_nothing_and_leaves_no_status_unfinished \
		tests/integration/test_supervision.py::test_healthz_stays_up_through_a_broker_outage_and_readyz_follows_the_broker

clean:
	rm -rf $(VENV) build *.egg-info
