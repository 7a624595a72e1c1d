"""Runs the fleet's outcome-event dispatcher (worker_service/outcome_events.py) in every worker process; one at a time delivers.

Hooks: ``after_worker_boot`` (starts the thread), ``after_worker_shutdown``
(stops it).  Every ``interval_s`` the thread asks Redis (the rate limiter's,
so RabbitMQ fleets have it too) for the ``events`` lease, renewed by its
holder each round; only the holder runs a round, so events go out in order,
whatever the size of the fleet, and another process takes over within the
lease when the holder dies.  The actors never wait for a receiver.  No actor
options.
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

from worker_service.brokers.lua import SCRIPTS
from worker_service.outcome_events import EventDispatcher

logger = logging.getLogger(__name__)


class EventDelivery(Middleware):
    """Parameters: client (Redis, for the lease), url (EVENTS_WEBHOOK_URL), secret (EVENTS_WEBHOOK_SECRET),
    interval_s, lease_s, namespace."""

    def __init__(
        self,
        client: Any,
        *,
        url: str,
        secret: str,
        interval_s: float = 0.5,
        lease_s: float = 10.0,
        namespace: str = "dramatiq",
    ) -> None:
        self.client = client
        self.lease_key = f"{namespace}:__lease__.events"
        self.url = url
        self.secret = secret
        self.interval_s = interval_s
        self.lease_s = lease_s
        self.stop_event = threading.Event()
        self.holder = ""

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop_event.clear()
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        dispatcher = EventDispatcher(self.url, self.secret, timeout_s=min(5.0, self.lease_s / 6))
        lease = self.client.register_script(SCRIPTS["lease"])  # the brokers' take-or-renew lease
        threading.Thread(
            target=self._loop, args=(lease, dispatcher), name="worker-events", daemon=True
        ).start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop_event.set()

    def _loop(self, lease: Any, dispatcher: EventDispatcher) -> None:
        while not self.stop_event.wait(self.interval_s):
            try:
                if lease(keys=[self.lease_key], args=[self.holder, int(self.lease_s * 1000)]):
                    dispatcher.run_once(max_seconds=self.lease_s / 3)
            except Exception as exc:  # noqa: BLE001 - an outage of the database or Redis must not end the loop
                logger.warning("Event delivery round failed: %s", exc)
