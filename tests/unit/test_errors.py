"""errors.classify: the default transient/permanent/wait verdicts every failure goes through."""

from __future__ import annotations

import pytest
import redis
import requests
from dramatiq.middleware.time_limit import TimeLimitExceeded

from worker_service.database import DatabaseUnavailable
from worker_service.errors import (
    Forbidden,
    HardTimeout,
    MemoryLimitExceeded,
    PermanentError,
    TransientError,
    classify,
)


def _http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"HTTP {status}", response=response)


@pytest.mark.parametrize(
    ("exc", "kind", "code", "dead_type"),
    [
        (PermanentError("bad", error_code="corrupt"), "permanent", "corrupt", "permanent_error"),
        (Forbidden("not yours"), "permanent", "forbidden", "forbidden"),
        (TransientError("503"), "transient", "transient", "retries_exhausted"),
        (TransientError("paused", spends_attempt=False), "wait", "transient", "retries_exhausted"),
        (HardTimeout("killed"), "transient", "timeout", "timeout"),
        (MemoryLimitExceeded("cap"), "permanent", "memory", "memory"),
        (MemoryError(), "permanent", "memory", "memory"),
        (DatabaseUnavailable("down"), "wait", "database_unavailable", "retries_exhausted"),
        (redis.ConnectionError("down"), "wait", "broker_unavailable", "retries_exhausted"),
        (_http_error(503), "transient", "http_503", "retries_exhausted"),
        (_http_error(429), "transient", "http_429", "retries_exhausted"),
        (_http_error(404), "permanent", "http_404", "permanent_error"),
        (requests.ConnectionError("refused"), "transient", "connection", "retries_exhausted"),
        (TimeLimitExceeded(), "transient", "timeout", "timeout"),
        (ValueError("bad input"), "permanent", "permanent_error", "permanent_error"),
        (RuntimeError("who knows"), "transient", "error", "retries_exhausted"),
    ],
)
def test_classification(exc, kind, code, dead_type):
    verdict = classify(exc)
    assert (verdict.kind, verdict.error_code, verdict.error_type) == (kind, code, dead_type)


def test_retry_after_travels_with_the_verdict():
    assert classify(TransientError("429", retry_after_ms=1500)).retry_after_ms == 1500
