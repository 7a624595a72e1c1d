"""middleware.liveness: healthy while threads live and no message outstays its limit; never asks the broker."""

from __future__ import annotations

import threading

from middleware import liveness
from middleware.liveness import Liveness
from tests.support.units import proxy, stub_broker


def _liveness(monkeypatch, beats: list[int]) -> Liveness:
    monkeypatch.setattr(liveness, "record_heartbeat", lambda: beats.append(1))
    return Liveness(interval_ms=100, default_time_limit_ms=1_000, wedge_grace_s=0.0)


def test_a_process_with_live_threads_and_no_late_message_records_its_heartbeat(monkeypatch):
    beats: list[int] = []
    check = _liveness(monkeypatch, beats)
    check.threads = [threading.current_thread()]
    assert check.check() and beats == [1]


def test_a_message_past_its_time_limit_and_grace_is_a_wedge(monkeypatch):
    beats: list[int] = []
    check = _liveness(monkeypatch, beats)
    broker = stub_broker(slow={"time_limit": 1})
    message = proxy("slow")
    check.before_process_message(broker, message)
    ident = threading.get_ident()
    mid, actor, _deadline = check.running[ident]
    check.running[ident] = (mid, actor, 0.0)  # its deadline passed
    assert not check.check() and beats == []
    assert "past its time limit" in check.problems()[f"message {message.message_id} of slow"]
    check.after_process_message(broker, message)
    assert check.check() and beats == [1]  # free again: healthy again


def test_a_dead_thread_makes_the_process_unhealthy(monkeypatch):
    beats: list[int] = []
    check = _liveness(monkeypatch, beats)
    dead = threading.Thread(target=lambda: None, name="worker-thread-0")
    dead.start()
    dead.join()
    check.threads = [dead]
    assert not check.check() and check.problems() == {"thread worker-thread-0": "died"}
