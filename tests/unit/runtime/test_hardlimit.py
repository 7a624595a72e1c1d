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


_SECRETS = {
    "KOMMO_ACCESS_TOKEN": "kommo-secret-1",
    "WEB_API_TOKEN": "api-secret-2",
    "OPENROUTER_API_KEY": "sk-or-secret-3",
    "BROKER_URL": "redis://:broker-secret-4@127.0.0.1:6379/5",
    "DATABASE_URL": "postgresql://u:db-secret-5@127.0.0.1/test",
    "EVENTS_WEBHOOK_SECRET": "events-secret-6",
}


def test_an_extraction_child_is_started_without_any_secret_of_the_workers_environment():
    """Regression (second probe): the children that parse hostile files inherited the Kommo token, the API token,
    the broker password and the OpenRouter key.  A fresh interpreter with those set runs one hard-limited call;
    neither the environment the child was started with (/proc) nor the one it holds names any of them, and the
    worker's own environment is whole again afterwards."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    script = (
        "import json, os\nfrom worker_service.runtime.hardlimit import run_hard_limited\n"
        "seen = run_hard_limited('tests.support.hogs:environment', timeout_s=60, memory_mb=512)\n"
        "seen['worker_after'] = os.environ.get('KOMMO_ACCESS_TOKEN')\nprint(json.dumps(seen))\n"
    )
    env = {**os.environ, **_SECRETS, "PYTHONPATH": str(root)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    for where in ("initial", "current"):
        assert "PATH=" in seen[where]  # what the child needs is there
        for name, value in _SECRETS.items():
            assert value not in seen[where] and f"{name}=" not in seen[where], (where, name)
    assert seen["worker_after"] == "kommo-secret-1"
