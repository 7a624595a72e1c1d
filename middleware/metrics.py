"""Prometheus metrics per message, and the worker's HTTP port as a Dramatiq fork.

Hooks: ``before_process_message``, ``after_process_message``,
``after_skip_message``; property ``forks`` (Dramatiq's CLI runs
:func:`worker_service.runtime.probes.serve` in one extra process: /metrics,
/healthz, /readyz on METRICS_HOST:METRICS_PORT).  The metric objects live in worker_service/observability/metrics.py.
No actor options.
"""

from __future__ import annotations

import time
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from worker_service.observability.metrics import DURATION, FAILURES, IN_PROGRESS, MESSAGES
from worker_service.outcome import Dead, Deferred, Retrying, Skipped, Succeeded, outcome_of, state_of
from worker_service.runtime.probes import serve

_LABELS: dict[type, str] = {
    Succeeded: "done",
    Skipped: "skipped",
    Retrying: "retried",
    Deferred: "deferred",
    Dead: "dead",
}


def _outcome_label(message: MessageProxy, exception: BaseException | None, skipped: bool) -> str:
    outcome = outcome_of(message)
    if outcome is not None:
        return _LABELS[type(outcome)]
    if skipped:  # skipped before it started, with no conclusion (stale duplicate)
        return "skipped"
    if message.failed:
        return "dead"
    return "done" if exception is None else "retried"


class Metrics(Middleware):
    """Parameters: port (METRICS_PORT; 0 disables the HTTP fork)."""

    def __init__(self, *, port: int) -> None:
        self.port = port
        self._children: dict[tuple[Any, ...], Any] = {}

    def _child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: ``labels()`` locks and hashes on every call."""
        key = (metric, *labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    @property
    def forks(self) -> list:
        return [serve] if self.port else []

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        state_of(message).started_at = time.monotonic()
        self._child(IN_PROGRESS, message.actor_name, message.queue_name).inc()

    def _finish(self, message: MessageProxy, exception: BaseException | None, skipped: bool) -> None:
        state = state_of(message)
        started, state.started_at = state.started_at, None
        if started is not None:
            self._child(IN_PROGRESS, message.actor_name, message.queue_name).dec()
            if not skipped:
                self._child(DURATION, message.actor_name, message.queue_name).observe(
                    time.monotonic() - started
                )
        label = _outcome_label(message, exception, skipped)
        self._child(MESSAGES, message.actor_name, message.queue_name, label).inc()
        outcome = outcome_of(message)
        if isinstance(outcome, Dead):
            self._child(FAILURES, message.actor_name, outcome.error_code).inc()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._finish(message, exception, skipped=False)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._finish(message, None, skipped=True)
