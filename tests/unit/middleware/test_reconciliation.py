"""middleware.reconciliation: only the holder of the fleet lease runs a round."""

from __future__ import annotations

import threading

from middleware.reconciliation import Reconciliation


class FakeBroker:
    def __init__(self, grant: bool) -> None:
        self.grant, self.asked = grant, threading.Event()

    def take_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        self.asked.set()
        assert name == "reconciler" and ttl_ms == 300  # three intervals
        return self.grant


class FakeReconciler:
    def __init__(self) -> None:
        self.rounds = threading.Event()

    def run_once(self):
        self.rounds.set()
        return []


def _run(grant: bool) -> FakeReconciler:
    middleware = Reconciliation(client=None, interval_s=0.1, grace_s=1.0)
    broker, reconciler = FakeBroker(grant), FakeReconciler()
    thread = threading.Thread(target=middleware._loop, args=(broker, reconciler), daemon=True)
    thread.start()
    assert broker.asked.wait(5)
    reconciler.rounds.wait(0.5)
    middleware.stop_event.set()
    thread.join(5)
    return reconciler


def test_the_lease_holder_reconciles():
    assert _run(grant=True).rounds.is_set()


def test_a_process_without_the_lease_does_not():
    assert not _run(grant=False).rounds.is_set()
