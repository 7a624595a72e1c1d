#!/usr/bin/env bash
# `make test`: lint (ruff, including T20: no print; mypy), then pytest against real services.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff" >&2
.venv/bin/ruff check .
echo "== mypy" >&2
.venv/bin/mypy
echo "== pytest" >&2
set +e
bash scripts/with-redis.sh .venv/bin/python -m pytest -ra "$@"
rc=$?
set -e
# pytest's summary (-ra) lists every skipped test with its reason.
exit $rc
