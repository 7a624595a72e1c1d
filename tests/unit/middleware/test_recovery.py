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

    def drain_dead_lettered(self) -> int:
        self.calls.append("drain")
        return 0

    def stop_deliveries(self) -> None:
        self.calls.append("stop deliveries")

    def mark_started(self, message) -> None:
        self.calls.append(f"mark {message.message_id}")

    def report_worker(self, info: dict) -> None:
        self.calls.append("report")
        self.reported = info

    def paused_queues(self) -> frozenset[str]:
        return frozenset({"tests"})

    def withdraw_worker(self) -> None:
        self.calls.append("withdraw")


def test_a_round_heartbeats_registers_and_recovers():
    broker = FakeBroker()
    assert Recovery(interval_ms=100).run_once(broker) == (1, 7)  # type: ignore[arg-type]
    assert broker.calls == ["heartbeat", "register_queues", "report", "drain", "recover"]


def test_a_graceful_shutdown_first_tells_the_broker_to_stop_taking_deliveries():
    broker = FakeBroker()
    Recovery(interval_ms=100).before_worker_shutdown(broker, None)  # type: ignore[arg-type]
    assert broker.calls == ["stop deliveries"]


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
    assert info["paused"] == ["tests"]  # what its pause check sees (tests wait for it instead of sleeping)


def test_a_graceful_stop_withdraws_the_report():
    broker = FakeBroker()
    Recovery(interval_ms=100).after_worker_shutdown(broker, None)  # type: ignore[arg-type]
    assert broker.calls == ["withdraw"]


def test_a_message_is_marked_started_and_a_broker_error_does_not_stop_it():
    broker, message = FakeBroker(), proxy()
    Recovery(interval_ms=100).before_process_message(broker, message)  # type: ignore[arg-type]
    assert broker.calls == [f"mark {message.message_id}"]

    class Down(FakeBroker):
        def mark_started(self, message) -> None:
            raise ConnectionError("down")

    Recovery(interval_ms=100).before_process_message(Down(), proxy())  # type: ignore[arg-type] - logs, no raise


def test_after_being_cut_off_longer_than_the_heartbeat_timeout_no_one_is_declared_dead_at_once(monkeypatch):
    """A worker back from an outage (or a failover) longer than the heartbeat timeout sees every other
    heartbeat stale: it must give them two intervals to report before it judges them."""
    import middleware.recovery as recovery_module

    clock = [1000.0]
    monkeypatch.setattr(recovery_module.time, "monotonic", lambda: clock[0])
    broker = FakeBroker()
    broker.heartbeat_timeout = 5_000  # type: ignore[attr-defined]
    recovery = Recovery(interval_ms=500)
    assert recovery.run_once(broker) == (1, 7)  # type: ignore[arg-type]
    clock[0] += 30  # thirty seconds without one round getting through
    broker.calls.clear()
    assert recovery.run_once(broker) == (0, 0)  # type: ignore[arg-type]
    assert "recover" not in broker.calls and broker.calls[0] == "heartbeat"  # our own heartbeat first
    clock[0] += 0.5
    assert recovery.run_once(broker) == (0, 0)  # type: ignore[arg-type]
    clock[0] += 0.6  # two intervals after it came back: the others have reported
    assert recovery.run_once(broker) == (1, 7)  # type: ignore[arg-type]


def test_a_short_blip_does_not_hold_recovery_back(monkeypatch):
    import middleware.recovery as recovery_module

    clock = [1000.0]
    monkeypatch.setattr(recovery_module.time, "monotonic", lambda: clock[0])
    broker = FakeBroker()
    broker.heartbeat_timeout = 5_000  # type: ignore[attr-defined]
    recovery = Recovery(interval_ms=500)
    recovery.run_once(broker)  # type: ignore[arg-type]
    clock[0] += 3  # under the heartbeat timeout
    assert recovery.run_once(broker) == (1, 7)  # type: ignore[arg-type]


def test_a_new_master_makes_the_process_give_back_what_it_no_longer_holds():
    broker = FakeBroker()
    masters = iter(["run-a", "run-a", "run-b", "run-b"])
    broker.master_identity = lambda: next(masters)  # type: ignore[attr-defined]
    broker.reconcile_held = lambda: broker.calls.append("reconcile") or 2  # type: ignore[attr-defined]
    recovery = Recovery(interval_ms=100)
    for _ in range(4):
        recovery.run_once(broker)  # type: ignore[arg-type]
    assert broker.calls.count("reconcile") == 1  # once, at the round that saw run-b
