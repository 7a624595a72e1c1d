"""middleware.recovery with real Redis: a dead worker's messages come back; queues are registered before
consumers start."""

from __future__ import annotations

import dramatiq
import redis

from middleware.recovery import Recovery
from tests.support.helpers import wait_for
from worker_service.brokers.redis import ReliableRedisBroker


class NoRoundsYet(Recovery):
    """Recovery whose maintenance thread has not had its first round (a loaded host schedules it late)."""

    def _loop(self, broker: dramatiq.Broker) -> None:
        return None


def test_a_queue_is_registered_before_a_process_can_hold_one_of_its_messages(
    redis_url: str, redis_client: redis.Redis
):
    # Regression: queues were registered by the first maintenance round only, which a busy CI host ran after the
    # consumers had fetched (the dashboard answered 404 to pausing the queue; recovery would have skipped it).
    broker = ReliableRedisBroker(url=redis_url, middleware=[NoRoundsYet(interval_ms=60_000)])
    registry_seen_by_the_message: list[set[bytes]] = []

    @dramatiq.actor(broker=broker, queue_name="early")
    def early() -> None:
        registry_seen_by_the_message.append(redis_client.smembers("dramatiq:__queues__"))

    early.send()
    worker = dramatiq.Worker(broker, worker_threads=1, worker_timeout=100)
    worker.start()
    try:
        wait_for(lambda: registry_seen_by_the_message, 10, 0.05, "the message ran")
    finally:
        worker.stop()
        broker.close()
    assert b"early" in registry_seen_by_the_message[0]
