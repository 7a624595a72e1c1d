"""middleware.recovery: each round heartbeats, registers queues and recovers dead workers; a start is marked."""

from __future__ import annotations

import dramatiq
import redis

from middleware.recovery import Recovery
from tests.support.helpers import wait_for
from tests.support.units import proxy
from worker_service.brokers.redis import ReliableRedisBroker


class FakeBroker:
    """The ReliableBroker members Recovery uses."""

    def __init__(self, fail: bool = False) -> None:
        self.calls: list[str] = []
        self.fail = fail

    def heartbeat(self) -> None:
        self.calls.append("heartbeat")
        if self.fail:
            raise ConnectionError("broker down")

    def register_queues(self) -> None:
        self.calls.append("register_queues")

    def recover_dead_workers(self) -> tuple[int, int]:
        self.calls.append("recover")
        return 1, 7

    def mark_started(self, message) -> None:
        self.calls.append(f"mark {message.message_id}")

    def report_worker(self, info: dict) -> None:
        self.calls.append("report")
        self.reported = info


def test_a_round_heartbeats_registers_and_recovers():
    broker = FakeBroker()
    assert Recovery(interval_ms=100).run_once(broker) == (1, 7)  # type: ignore[arg-type]
    assert broker.calls == ["heartbeat", "register_queues", "report", "recover"]


def test_each_round_reports_what_the_process_is_running():
    import os

    broker, recovery = FakeBroker(), Recovery(interval_ms=100)
    running, done = proxy("slow_actor"), proxy("fast_actor")
    for message in (running, done):
        recovery.before_process_message(broker, message)  # type: ignore[arg-type]
    recovery.after_process_message(broker, done)  # type: ignore[arg-type]
    recovery.run_once(broker)  # type: ignore[arg-type]
    info = broker.reported
    assert (info["pid"], info["busy"]) == (os.getpid(), 1)
    assert [(c["message_id"], c["actor"]) for c in info["current"]] == [(running.message_id, "slow_actor")]
    assert info["rss_bytes"] > 0 and info["heartbeat_at"] > 0


def test_a_message_is_marked_started_and_a_broker_error_does_not_stop_it():
    broker, message = FakeBroker(), proxy()
    Recovery(interval_ms=100).before_process_message(broker, message)  # type: ignore[arg-type]
    assert broker.calls == [f"mark {message.message_id}"]

    class Down(FakeBroker):
        def mark_started(self, message) -> None:
            raise ConnectionError("down")

    Recovery(interval_ms=100).before_process_message(Down(), proxy())  # type: ignore[arg-type] - logs, no raise


class NoRoundsYet(Recovery):
    """Recovery whose maintenance thread has not had its first round (a loaded host schedules it late)."""

    def _loop(self, broker: dramatiq.Broker) -> None:
        return None


def test_a_queue_is_registered_before_a_process_can_hold_one_of_its_messages(redis_url: str,
                                                                             redis_client: redis.Redis):
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
