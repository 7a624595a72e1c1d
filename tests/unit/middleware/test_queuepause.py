"""middleware.queuepause: a message of a paused queue is put back unstarted, without spending an attempt or its
time budget; other queues' messages are untouched (unit: the hook with a broker that reports paused queues)."""

from __future__ import annotations

import pytest
from dramatiq.middleware import SkipMessage

from middleware.queuepause import PUT_BACK_MS, QueuePause
from tests.support.units import proxy
from worker_service.outcome import Deferred, budget_start, outcome_of, successor_of


class PausingBroker:
    def __init__(self, *paused: str) -> None:
        self.paused = set(paused)

    def paused_queues(self) -> set[str]:
        return self.paused


def test_a_message_of_a_paused_queue_is_put_back_unstarted_and_free():
    message = proxy(queue="assets", retries=2)
    started_budget = budget_start(message)
    with pytest.raises(SkipMessage):
        QueuePause().before_process_message(PausingBroker("assets"), message)
    deferred = outcome_of(message)
    assert isinstance(deferred, Deferred) and "paused" in deferred.reason
    copy = successor_of(message)
    assert copy is not None and copy.delay_ms == PUT_BACK_MS
    assert copy.message.options["retries"] == 2  # no attempt spent
    assert (
        copy.message.options["budget_started_at"] == started_budget + PUT_BACK_MS
    )  # the wait is not charged


def test_messages_of_other_queues_run():
    message = proxy(queue="crm")
    QueuePause().before_process_message(PausingBroker("assets"), message)
    assert outcome_of(message) is None and successor_of(message) is None
