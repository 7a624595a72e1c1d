"""REQUIRE_ALL_TESTS=1 (what .ci/run sets) turns a skip for a missing service into a failure with the same reason:
run for real in a network namespace where nothing listens (PostgreSQL's tests then fail, not skip); without it
a developer's run skips them, saying why."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from tests.support.helpers import ROOT, unavailable

PG_TESTS = "tests/integration/test_database.py::test_postgres_dead_letter_store_roundtrip"


def _in_empty_namespace(require_all: bool) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "REQUIRE_ALL_TESTS"))}
    if require_all:
        env["REQUIRE_ALL_TESTS"] = "1"
    command = [
        "unshare",
        "-n",
        sys.executable,
        "-m",
        "pytest",
        "-p",
        "no:cacheprovider",
        "-q",
        "-rs",
        "-o",
        "addopts=",
        PG_TESTS,
    ]
    return subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


@pytest.mark.processes
def test_a_missing_service_fails_under_require_all_tests_and_skips_without_it():
    if os.geteuid() != 0 or not shutil.which("unshare"):
        unavailable("needs root and unshare for a network namespace")
    required = _in_empty_namespace(require_all=True)
    assert required.returncode == 1, required.stdout[-2000:]
    assert "1 failed" in required.stdout or "1 error" in required.stdout  # a fixture fails as an error
    assert "PostgreSQL is not reachable" in required.stdout
    assert "REQUIRE_ALL_TESTS=1" in required.stdout
    relaxed = _in_empty_namespace(require_all=False)
    assert relaxed.returncode == 0, relaxed.stdout[-2000:]
    assert "1 skipped" in relaxed.stdout and "PostgreSQL is not reachable" in relaxed.stdout
