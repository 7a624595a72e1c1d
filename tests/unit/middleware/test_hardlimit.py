"""PrewarmChildren: a worker that runs extraction starts its children at boot; others start none (unit: real
children of a private pool, no broker)."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

import middleware.hardlimit as prewarm
from middleware.hardlimit import PrewarmChildren
from tests.support.units import stub_broker
from worker_service.runtime.hardlimit import HardLimitPool


@pytest.fixture
def pool(monkeypatch):
    pool = HardLimitPool()
    monkeypatch.setattr(prewarm, "get_pool", lambda: pool)
    yield pool
    pool.shutdown()


def _boot(queues: set[str] | None, threads: int) -> None:
    worker = SimpleNamespace(consumer_whitelist=queues, worker_threads=threads)
    PrewarmChildren(queues=frozenset({"assets"}), memory_mb=256).after_worker_boot(stub_broker(), worker)


def _idle_after(pool: HardLimitPool, expected: int) -> int:
    deadline = time.monotonic() + 30
    while pool._idle.qsize() < expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return pool._idle.qsize()


@pytest.mark.parametrize("queues", [{"assets"}, None], ids=["assets group", "all queues"])
def test_a_worker_consuming_assets_starts_one_idle_child_per_thread(pool, queues):
    _boot(queues, threads=3)
    assert _idle_after(pool, 3) == 3
    children = [pool._take(256) for _ in range(3)]
    assert all(child.process.is_alive() for child in children)
    for child in children:
        child.conn.send(("worker_service.assets.extraction:extract", ("/nonexistent", "text", {}), {}))
        assert child.conn.recv()[0] == "error"  # FileNotFoundError, from a working child
        pool._give_back(child)


def test_a_worker_of_another_group_starts_no_child(pool):
    _boot({"knowledge"}, threads=4)
    time.sleep(0.5)
    assert pool._idle.qsize() == 0
