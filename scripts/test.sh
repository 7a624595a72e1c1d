#!/usr/bin/env bash
# `make test`: lint (ruff, including T20: no print; mypy), then pytest against real services.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff" >&2
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy" >&2
.venv/bin/mypy
echo "== pytest" >&2
set +e
if [[ " $* " == *" -n "* ]]; then
  # Tests marked `alone` count arrivals per second at a fake upstream: beside another test's worker processes
  # on two cores, the fake's own timestamps lag enough to see a burst that was never sent.  They run after the
  # parallel batch, one at a time, with the machine to themselves.
  bash scripts/with-redis.sh .venv/bin/python -m pytest -ra -m "not alone" "$@"
  rc=$?
  echo "== pytest: the tests that need the machine alone" >&2
  bash scripts/with-redis.sh .venv/bin/python -m pytest -ra -m alone
  rc_alone=$?
  ((rc == 0)) && rc=$rc_alone
else
  bash scripts/with-redis.sh .venv/bin/python -m pytest -ra "$@"
  rc=$?
fi
set -e
# pytest's summary (-ra) lists every skipped test with its reason.
exit $rc
