"""PrewarmChildren: a worker that runs extraction starts its children at boot; others start none (unit: real
children of a private pool, no broker)."""

from __future__ import annotations

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


def _boot(queues: set[str] | None, threads: int) -> PrewarmChildren:
    worker = SimpleNamespace(consumer_whitelist=queues, worker_threads=threads)
    middleware = PrewarmChildren(queues=frozenset({"assets"}), memory_mb=256)
    middleware.after_worker_boot(stub_broker(), worker)
    return middleware


@pytest.mark.parametrize("queues", [{"assets"}, None], ids=["assets group", "all queues"])
def test_a_worker_consuming_assets_starts_one_idle_child_per_thread(pool, queues):
    middleware = _boot(queues, threads=3)
    assert middleware.warming is not None
    middleware.warming.join(60)  # the warm-up has finished: what it started is all there will be
    assert not middleware.warming.is_alive() and pool._idle.qsize() == 3
    children = [pool._take(256) for _ in range(3)]
    assert all(child.process.is_alive() for child in children)
    for child in children:
        child.conn.send(("worker_service.assets.extraction:extract", ("/nonexistent", "text", {}), {}))
        assert child.conn.recv()[0] == "error"  # FileNotFoundError, from a working child
        pool._give_back(child)


def test_a_worker_of_another_group_starts_no_child(pool, monkeypatch):
    asked: list[int] = []
    monkeypatch.setattr(pool, "warm", lambda children, memory_mb: asked.append(children))
    middleware = _boot({"knowledge"}, threads=4)
    assert middleware.warming is None and asked == []  # no warm-up thread at all: nothing can start later
    assert pool._idle.qsize() == 0
