"""worker_service.brokers.groupcommit: operations of many threads share one round trip; each caller served once."""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import pytest
import redis

from worker_service.brokers.groupcommit import GroupCommit


def test_group_commit_serves_every_caller_exactly_once_in_shared_batches():
    batches: list[list[int]] = []
    running = threading.Semaphore(1)
    overlapping = []

    def execute(ops: list[int]) -> list[int]:
        if not running.acquire(blocking=False):
            overlapping.append(ops)
        time.sleep(0.001)  # one round trip
        batches.append(list(ops))
        running.release()
        return [op * 2 for op in ops]

    commit = GroupCommit(execute, max_batch=64)
    results: dict[int, int] = {}

    def caller(base: int) -> None:
        for i in range(200):
            op = base + i
            results[op] = commit.submit(op)

    threads = [threading.Thread(target=caller, args=(t * 1000,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    executed = [op for batch in batches for op in batch]
    assert sorted(executed) == sorted(results) and len(executed) == 16 * 200
    assert all(results[op] == op * 2 for op in results)
    assert not overlapping, "two batches ran at the same time"
    assert len(batches) < len(executed) / 4, f"{len(batches)} calls for {len(executed)} operations"
    assert max(len(b) for b in batches) <= 64
    assert commit.pending == []


def test_group_commit_gives_a_batch_error_to_that_batch_only_and_keeps_serving():
    first_running, gate = threading.Event(), threading.Event()

    def execute(ops: list[str]) -> list[str]:
        if ops[0] == "first":
            first_running.set()
            gate.wait(5)  # the others queue up behind this batch
        if "bad" in ops:
            raise redis.ConnectionError("broker gone")
        return ops

    commit: GroupCommit[str, str] = GroupCommit(execute)
    outcomes: dict[str, Any] = {}

    def call(op: str) -> None:
        try:
            outcomes[op] = commit.submit(op)
        except redis.ConnectionError as exc:
            outcomes[op] = exc

    first = threading.Thread(target=call, args=("first",))
    first.start()
    assert first_running.wait(5)
    others = [threading.Thread(target=call, args=(op,)) for op in ("x", "bad", "y")]
    for t in others:
        t.start()
    while len(commit.pending) < 3:
        time.sleep(0.001)
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert outcomes["first"] == "first"
    errors = [outcomes[op] for op in ("x", "bad", "y")]
    assert all(isinstance(e, redis.ConnectionError) for e in errors)
    assert len({id(e) for e in errors}) == 3, "each caller raises its own copy"
    assert commit.submit("after") == "after"


def test_detached_operations_are_retried_through_transient_errors_and_flushed():
    outage = threading.Event()
    outage.set()
    written: list[str] = []
    attempts: list[list[str]] = []

    def execute(ops: list[str]) -> list[str]:
        attempts.append(list(ops))
        if outage.is_set():
            raise redis.ConnectionError("broker gone")
        written.extend(ops)
        return ops

    commit: GroupCommit[str, str] = GroupCommit(execute, transient=(redis.ConnectionError,))
    for op in ("settle-1", "settle-2"):
        commit.submit_detached(op)  # returns at once, outage or not
    with pytest.raises(redis.ConnectionError):
        commit.submit("mark")  # a waiting caller gets the error and retries itself
    assert commit.flush(0.3) is False and written == []
    outage.clear()
    assert commit.flush(10) is True
    assert written == ["settle-1", "settle-2"]  # each written once, in order, after the outage
    assert len(attempts) >= 3


def test_detached_operations_failing_for_good_are_dropped_not_retried_forever(caplog):
    calls: list[list[str]] = []

    def execute(ops: list[str]) -> list[str]:
        calls.append(list(ops))
        raise ValueError("bad operation")

    commit: GroupCommit[str, str] = GroupCommit(execute, transient=(redis.ConnectionError,))
    commit.submit_detached("bad")
    assert commit.flush(5) is True
    assert calls == [["bad"]]
    assert "failed for good" in caplog.text


def test_group_commit_works_in_a_forked_child():
    """Dramatiq builds the broker, then forks its worker processes: the child needs its own committer."""
    commit: GroupCommit[int, int] = GroupCommit(lambda ops: [op * 2 for op in ops])
    assert commit.submit(1) == 2  # the parent's committer is running when the child is forked
    pid = os.fork()
    if pid == 0:
        os._exit(0 if commit.submit(21) == 42 else 1)
    deadline = time.monotonic() + 10
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's submit never returned")
    assert os.waitstatus_to_exitcode(done[1]) == 0
