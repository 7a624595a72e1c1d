"""middleware.recovery: each round heartbeats, registers queues and recovers dead workers (unit: a fake broker)."""

from __future__ import annotations

from middleware.recovery import Recovery
from tests.support.units import proxy


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
