"""middleware.metrics: one count per message under the label of its outcome."""

from __future__ import annotations

from typing import get_args

from prometheus_client import REGISTRY

from middleware.metrics import Metrics
from tests.support.units import proxy, stub_broker
from worker_service.outcome import Dead, Deferred, Outcome, Retrying, Skipped, Succeeded, conclude


def _count(outcome: str) -> float:
    return (
        REGISTRY.get_sample_value(
            "worker_messages_total", {"actor": "metered", "queue": "tests", "outcome": outcome}
        )
        or 0.0
    )


def test_every_outcome_is_counted_under_its_label():
    broker, metrics = stub_broker(), Metrics(port=0)
    cases = [
        (Succeeded(), "done"),
        (Retrying(0, "x"), "retried"),
        (Dead.of("crash_loop", None), "dead"),
        (Skipped("no key"), "skipped"),
        (Deferred(0, "paused"), "deferred"),
    ]
    assert {type(outcome) for outcome, _ in cases} == set(
        get_args(Outcome)
    )  # every kind of outcome, none left out
    before = {label: _count(label) for _, label in cases}
    for outcome, _label in cases:
        message = proxy("metered")
        metrics.before_process_message(broker, message)
        conclude(message, outcome)
        metrics.after_process_message(broker, message)
    assert {label: _count(label) - before[label] for _, label in cases} == {label: 1.0 for _, label in cases}
    in_progress = REGISTRY.get_sample_value(
        "worker_messages_in_progress", {"actor": "metered", "queue": "tests"}
    )
    assert in_progress == 0.0


def test_a_stale_duplicate_skipped_before_it_started_counts_as_skipped():
    broker, metrics = stub_broker(), Metrics(port=0)
    before = _count("skipped")
    message = proxy("metered")
    metrics.before_process_message(broker, message)
    metrics.after_skip_message(broker, message)
    assert _count("skipped") - before == 1.0
