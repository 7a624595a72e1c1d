"""middleware.throughput: finished messages counted per minute in-process, then added to Redis in one flush."""

from __future__ import annotations

from middleware.throughput import Throughput
from tests.support.units import proxy, stub_broker
from worker_service.outcome import Dead, kill


def test_done_and_dead_messages_are_counted_per_minute_and_retries_are_not(redis_client):
    broker, middleware = stub_broker(), Throughput(redis_client, namespace="wtest")
    done, retried, dead = proxy(queue="assets"), proxy(queue="assets"), proxy(queue="assets.DQ")
    kill(dead, Dead.of("retries_exhausted", RuntimeError("x")))
    middleware.after_process_message(broker, done)
    middleware.after_process_message(broker, retried, exception=RuntimeError("again"))  # it comes back
    middleware.after_process_message(broker, dead, exception=RuntimeError("x"))
    middleware.flush()

    def counts() -> dict[bytes, int]:  # summed over minute keys: the test may straddle a minute
        total: dict[bytes, int] = {}
        for key in redis_client.scan_iter("wtest:__stats__.*"):
            assert 0 < redis_client.ttl(key) <= 26 * 3600
            for field, value in redis_client.hgetall(key).items():
                total[field] = total.get(field, 0) + int(value)
        return total

    assert counts() == {b"assets:done": 1, b"assets:failed": 1}
    middleware.flush()  # nothing new: nothing written twice
    assert counts() == {b"assets:done": 1, b"assets:failed": 1}
