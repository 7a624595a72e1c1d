"""middleware.outcome_events: only the holder of the fleet's ``events`` lease runs a delivery round, and a
failing round (database or Redis down) does not end the loop (unit: the loop with a fake lease and dispatcher)."""

from __future__ import annotations

import threading

from middleware.outcome_events import EventDelivery


class FakeDispatcher:
    def __init__(self, fail_first: int = 0) -> None:
        self.rounds = 0
        self.fail_first = fail_first
        self.enough = threading.Event()

    def run_once(self, max_seconds: float) -> dict[str, int]:
        self.rounds += 1
        if self.rounds >= 3:
            self.enough.set()
        if self.rounds <= self.fail_first:
            raise ConnectionError("database is down")
        return {"delivered": 0, "failed": 0}


def _run(grant: bool, dispatcher: FakeDispatcher) -> list[tuple[list[str], list[object]]]:
    middleware = EventDelivery(
        client=None, url="http://127.0.0.1:1/", secret="s", interval_s=0.01, lease_s=3.0
    )
    middleware.holder = "host:1:abc"
    asked: list[tuple[list[str], list[object]]] = []
    asked_three = threading.Event()

    def lease(keys: list[str], args: list[object]) -> int:
        asked.append((keys, args))
        if len(asked) >= 3:
            asked_three.set()
        return 1 if grant else 0

    thread = threading.Thread(target=middleware._loop, args=(lease, dispatcher), daemon=True)
    thread.start()
    assert asked_three.wait(5)
    if grant:
        assert dispatcher.enough.wait(5)
    middleware.stop_event.set()
    thread.join(5)
    assert not thread.is_alive()
    return asked


def test_the_lease_holder_delivers_every_round_and_survives_failing_rounds():
    dispatcher = FakeDispatcher(fail_first=2)
    asked = _run(True, dispatcher)
    assert dispatcher.rounds >= 3  # two rounds failed, the loop went on
    assert asked[0] == (["dramatiq:__lease__.events"], ["host:1:abc", 3000])


def test_a_process_without_the_lease_delivers_nothing():
    dispatcher = FakeDispatcher()
    _run(False, dispatcher)
    assert dispatcher.rounds == 0
