"""Actors used only by the integration tests: `dramatiq actors tests.support.worker_actors`.

They import ``actors`` first, so they run under the production broker and middleware stack.
Each records what happened in Redis under the TEST_PREFIX key prefix.
"""

from __future__ import annotations

import os
import threading
import time

import dramatiq
from worker_contracts.redis_urls import redis_client

import actors  # noqa: F401 - builds the broker and the middleware stack
from worker_service.errors import PermanentError, TransientError
from worker_service.runtime.hardlimit import run_hard_limited

PREFIX = os.environ.get("TEST_PREFIX", "wtest")
# Records go straight to Redis (TEST_RECORD_URL), not through a proxy a test may cut.
_client = redis_client(
    os.environ.get("TEST_RECORD_URL") or os.environ["BROKER_URL"]
)  # any form, Sentinel's too


def record(kind: str, value: str) -> None:
    _client.rpush(f"{PREFIX}:{kind}", value)


@dramatiq.actor(queue_name="tests", max_attempts=3, retry_hours=1)
def noop(tag: str) -> None:
    record("done", tag)


@dramatiq.actor(queue_name="tests", max_attempts=3, retry_hours=1)
def poison(tag: str) -> None:
    attempt = _client.incr(f"{PREFIX}:attempts:{tag}")
    record("attempt", f"{tag}:{attempt}")
    raise TransientError(f"boom on attempt {attempt}")


@dramatiq.actor(queue_name="tests", max_attempts=3, retry_hours=1)
def permanent(tag: str) -> None:
    record("attempt", tag)
    raise PermanentError("this can never work", error_code="corrupt")


@dramatiq.actor(queue_name="tests", max_attempts=5, retry_hours=1)
def flaky(tag: str, failures: int) -> None:
    attempt = _client.incr(f"{PREFIX}:attempts:{tag}")
    if attempt <= failures:
        raise TransientError(f"flaky attempt {attempt}", retry_after_ms=100)
    record("done", tag)


@dramatiq.actor(queue_name="tests", max_attempts=3, retry_hours=1)
def sleepy(tag: str, seconds: float) -> None:
    record("started", tag)
    time.sleep(seconds)
    record("done", tag)


@dramatiq.actor(queue_name="tests", max_attempts=2, retry_hours=1)
def native_block(tag: str, seconds: float, limit: float) -> None:
    record("started", tag)
    run_hard_limited("time:sleep", seconds, timeout_s=limit, memory_mb=256)
    record("done", tag)


@dramatiq.actor(queue_name="tests", max_attempts=2, retry_hours=1)
def memory_hog(tag: str, megabytes: int, cap: int) -> None:
    record("started", tag)
    run_hard_limited("tests.support.hogs:allocate", megabytes, timeout_s=30, memory_mb=cap)
    record("done", tag)


@dramatiq.actor(queue_name="tests")
def report_threads(tag: str) -> None:
    from dramatiq.worker import WorkerThread

    count = sum(1 for t in threading.enumerate() if isinstance(t, WorkerThread))
    record("threads", f"{tag}:{count}")


@dramatiq.actor(queue_name="tests", max_attempts=3, retry_hours=1)
def cut_then_fail(tag: str) -> None:
    """First attempt: ask the test to cut the broker, wait until it did, then fail (a retry is needed)."""
    attempt = _client.incr(f"{PREFIX}:attempts:{tag}")
    if attempt == 1:
        record("cut", tag)
        deadline = time.monotonic() + 30
        while not _client.exists(f"{PREFIX}:cut-done") and time.monotonic() < deadline:
            time.sleep(0.05)
        raise TransientError("failing while the broker is cut")
    record("done", tag)


def _hold(tag: str) -> None:
    record("started", tag)
    deadline = time.monotonic() + 120
    while _client.exists(f"{PREFIX}:hold") and time.monotonic() < deadline:
        time.sleep(0.05)
    record("done", tag)


@dramatiq.actor(queue_name="tests", max_attempts=3, retry_hours=1)
def hold(tag: str) -> None:
    """Runs while the key <prefix>:hold exists (at most 120 s), then records completion."""
    _hold(tag)


@dramatiq.actor(queue_name="tests", status_track="asset", max_attempts=3, retry_hours=1)
def tracked_hold(asset_id: str) -> None:
    """Like ``hold``, for an asset record (status tracked): the test kills the worker while it runs."""
    _hold(asset_id)


@dramatiq.actor(queue_name="tests", max_attempts=3, retry_hours=1)
def fail_after_cut(tag: str) -> None:
    """Counts its runs, asks the test to cut the database, waits until it did, then fails for good."""
    _client.incr(f"{PREFIX}:runs:{tag}")
    record("cut", tag)
    deadline = time.monotonic() + 30
    while not _client.exists(f"{PREFIX}:cut-done") and time.monotonic() < deadline:
        time.sleep(0.05)
    raise PermanentError("this can never work", error_code="corrupt")


@dramatiq.actor(queue_name="tests", max_attempts=1, retry_hours=1, time_limit=1000)
def wedge(tag: str, seconds: float) -> None:
    """Blocks in native code past its 1 s time limit: the soft limit cannot interrupt it (a wedged thread)."""
    import ctypes

    record("started", tag)
    ctypes.CDLL("libc.so.6").sleep(int(seconds))  # C sleep: no bytecode runs, so no async exception lands
    record("done", tag)


@dramatiq.actor(queue_name="tests", rate_limit="kommo", max_attempts=2, retry_hours=1)
def limited_call(tag: str) -> None:
    """Calls the `kommo` upstream: one limiter slot per request, as an upstream client does.  Records when it
    ran and what its message says of attempts spent and deferrals."""
    import json

    from dramatiq.middleware import CurrentMessage

    dramatiq.get_broker().rate_limiter.slot("kommo")
    options = CurrentMessage.get_current_message().options
    record(
        "ran",
        json.dumps(
            {
                "tag": tag,
                "at": time.time(),
                "retries": options.get("retries", 0),
                "deferrals": options.get("deferrals", 0),
            }
        ),
    )
    record("done", tag)


@dramatiq.actor(queue_name="tests", rate_limit="kommo", max_attempts=3, retry_hours=1)
def limited_http_call(tag: str, url: str) -> None:
    """One rate-limited HTTP request to a fake upstream, as an upstream client makes it."""
    import requests

    dramatiq.get_broker().rate_limiter.slot("kommo", max_wait_ms=60_000)
    response = requests.get(url, timeout=10)
    record("status", f"{tag}:{response.status_code}")


@dramatiq.actor(queue_name="bench")
def bench_noop(n: int) -> None:
    return None


@dramatiq.actor(queue_name="tests", max_attempts=1, retry_hours=1)
def leaky(token: str) -> None:
    """Fails with a secret in its kwargs and in its error message (Sentry must scrub both)."""
    raise RuntimeError(f"upstream refused credentials {token}")


@dramatiq.actor(queue_name="bench")
def latency_probe(sent_ms: float) -> None:
    _client.rpush("bench:latency", time.time() * 1000 - sent_ms)


@dramatiq.actor(queue_name="tests", max_attempts=1, retry_hours=1)
def unexpected(tag: str) -> None:
    """A bug: an exception the service does not classify (logged at ERROR with its traceback)."""
    record("attempt", tag)
    raise KeyError(tag)
