"""The hard limit's child processes when the calling thread is interrupted (unit: real children, no broker)."""

from __future__ import annotations

import ctypes
import os
import threading
import time

from dramatiq.middleware.time_limit import TimeLimitExceeded

from worker_service.runtime.hardlimit import get_pool, run_hard_limited


def _raise_in(thread: threading.Thread, exc_type: type[BaseException]) -> None:
    """What Dramatiq's TimeLimit middleware does when a message passes its soft limit."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread.ident), ctypes.py_object(exc_type))


def test_soft_time_limit_during_a_hard_limited_call_kills_the_child_at_once(monkeypatch):
    pool = get_pool()
    children = []
    take = pool._take
    monkeypatch.setattr(pool, "_take", lambda memory_mb: children.append(take(memory_mb)) or children[-1])
    outcome: dict[str, object] = {}

    def call() -> None:
        try:
            run_hard_limited("time:sleep", 30, timeout_s=60, memory_mb=256)
        except TimeLimitExceeded as exc:
            outcome["raised"], outcome["at"] = exc, time.monotonic()

    thread = threading.Thread(target=call)
    thread.start()
    deadline = time.monotonic() + 30
    while not children and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # the child is busy sleeping
    interrupted = time.monotonic()
    _raise_in(thread, TimeLimitExceeded)
    thread.join(10)
    assert isinstance(outcome.get("raised"), TimeLimitExceeded)
    assert outcome["at"] - interrupted < 2  # not at the 60 s hard deadline
    child = children[0]
    assert not child.process.is_alive()  # killed, not left working on abandoned input
    assert pool._idle.empty()  # and never handed to the next caller
    # the pool still serves the next call with a fresh child
    assert run_hard_limited("os:getpid", timeout_s=30, memory_mb=256) != os.getpid()
