"""middleware.throughput: finished messages counted per minute, queue and outcome in process, flushed in one
pipeline; a retry is not counted; a flush Redis refuses keeps its counts for the next one (unit: a fake
pipeline records the calls)."""

from __future__ import annotations

from middleware.throughput import KEEP_S, Throughput
from tests.support.units import proxy


class FakeRedis:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.calls: list[tuple] = []

    def pipeline(self, transaction: bool = True) -> FakeRedis:
        return self

    def hincrby(self, key: str, field: str, n: int) -> None:
        self.calls.append(("hincrby", key, field, n))

    def expire(self, key: str, seconds: int) -> None:
        self.calls.append(("expire", key, seconds))

    def execute(self) -> None:
        if self.fail:
            raise ConnectionError("Redis is down")


def _finish(middleware: Throughput, queue: str, *, failed: bool = False, retried: bool = False) -> None:
    message = proxy(queue=queue)
    if failed:
        message.fail()
    middleware.after_process_message(
        None, message, exception=RuntimeError("x") if failed or retried else None
    )


def test_done_and_failed_are_counted_per_queue_and_a_retry_is_not():
    client = FakeRedis()
    middleware = Throughput(client, namespace="ns")
    for _ in range(3):
        _finish(middleware, "assets")
    _finish(middleware, "assets.DQ")  # a delayed message counts for its queue
    _finish(middleware, "crm", failed=True)
    _finish(middleware, "crm", retried=True)
    middleware.flush()
    increments = {
        (field, n)
        for op, key, field, n in (c for c in client.calls if c[0] == "hincrby")
        if key.startswith("ns:__stats__.")
    }
    assert increments == {("assets:done", 4), ("crm:failed", 1)}
    keys = {c[1] for c in client.calls if c[1].startswith("ns:__stats__.")}
    assert len(keys) == 1
    assert ("expire", next(iter(keys)), KEEP_S) in client.calls


def test_each_actor_gets_its_done_failed_and_retried_attempts_and_their_run_time_buckets():
    from worker_service.observability.runtimes import bucket_of

    client = FakeRedis()
    middleware = Throughput(client, namespace="ns")
    for outcome in ("done", "done", "failed", "retried"):
        message = proxy("extract", queue="knowledge")
        middleware.before_process_message(None, message)
        if outcome == "failed":
            message.fail()
        middleware.after_process_message(
            None, message, exception=None if outcome == "done" else RuntimeError("x")
        )
    middleware.flush()
    per_actor = {
        field: n
        for op, key, field, n in (c for c in client.calls if c[0] == "hincrby")
        if key.startswith("ns:__actors__.")
    }
    fast = bucket_of(0.001)  # these ran in well under 5 ms
    assert per_actor == {"extract:done": 2, "extract:failed": 1, "extract:retried": 1, f"extract:le{fast}": 4}
    assert middleware.started == {}  # nothing left behind


def test_counts_survive_a_flush_that_redis_refuses():
    client = FakeRedis(fail=True)
    middleware = Throughput(client)
    _finish(middleware, "assets")
    middleware.flush()
    client.fail, client.calls = False, []
    middleware.flush()
    assert [c for c in client.calls if c[0] == "hincrby"][0][2:] == ("assets:done", 1)
