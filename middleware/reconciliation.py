"""Runs the fleet's reconciler (worker_service/reconciliation.py) in every worker process; one at a time does the work.

Hooks: ``after_worker_boot`` (starts the thread), ``after_worker_shutdown``
(stops it).  Every ``RECONCILE_INTERVAL_SECONDS`` the thread asks the
broker for the ``reconciler`` lease (three intervals long, renewed by its
holder each round); only the holder runs a round, so the fleet reconciles
once per interval whatever its size, and another process takes over within
three intervals when the holder dies (on RabbitMQ the lease lives in the
control Redis, RATELIMIT_REDIS_URL).  No actor options.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid
from typing import Any

import dramatiq
from dramatiq.middleware import Middleware

from worker_service.reconciliation import Reconciler

logger = logging.getLogger(__name__)


class Reconciliation(Middleware):
    """Parameters:
    client: Redis client for the reconciler's state between rounds.
    interval_s(float): RECONCILE_INTERVAL_SECONDS.
    grace_s(float): RECONCILE_GRACE_SECONDS.
    chunk_retention_days(float): KNOWLEDGE_CACHE_DAYS, event_retention_days(float): CRM_EVENTS_RETENTION_DAYS
      (the lease holder also purges older LLM chunk results and Kommo webhook events, hourly), and
      outbox_retention_days(float): EVENTS_RETENTION_DAYS (delivered outcome events).
    """

    def __init__(
        self,
        client: Any,
        *,
        interval_s: float,
        grace_s: float,
        chunk_retention_days: float | None = None,
        event_retention_days: float | None = None,
        outbox_retention_days: float | None = None,
    ) -> None:
        self.client = client
        self.interval_s = interval_s
        self.grace_s = grace_s
        self.chunk_retention_days = chunk_retention_days
        self.event_retention_days = event_retention_days
        self.outbox_retention_days = outbox_retention_days
        self.stop_event = threading.Event()
        self.holder = ""  # named in after_worker_boot: one per forked worker process
        self.thread: threading.Thread | None = None

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop_event.clear()
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        reconciler = Reconciler(
            broker,
            self.client,
            grace_s=self.grace_s,
            interval_s=self.interval_s,
            namespace=getattr(broker, "namespace", "dramatiq"),
            chunk_retention_days=self.chunk_retention_days,
            event_retention_days=self.event_retention_days,
            outbox_retention_days=self.outbox_retention_days,
        )
        self.thread = threading.Thread(
            target=self._loop, args=(broker, reconciler), name="worker-reconciler", daemon=True
        )
        self.thread.start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop_event.set()
        if self.thread is not None:  # its round ends before the broker closes the connections it uses
            self.thread.join(10)

    def _loop(self, broker: Any, reconciler: Reconciler) -> None:
        while not self.stop_event.wait(self.interval_s):
            try:
                if not broker.take_lease("reconciler", self.holder, int(self.interval_s * 3000)):
                    continue
                reconciler.run_once()
            except Exception as exc:  # noqa: BLE001 - an outage must not end the loop
                logger.warning("Reconciliation round failed: %s", exc)
