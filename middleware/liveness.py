"""Liveness: whether this worker process can make progress, independent of the broker.

Hooks: ``after_worker_boot`` (starts the check thread), ``before_worker_shutdown``
(stops it: threads that stop on purpose are not a failure), ``before_process_message`` / ``after_process_message`` /
``after_skip_message`` (which thread runs what, since when).  No actor options.

Every interval a thread of its own checks two local facts: every worker and
consumer thread of the process is alive, and no message is still running
``wedge_grace`` past its actor's time limit (the soft limit could not
interrupt it: stuck in C code or a blocking call).  When both hold it
records ``worker_heartbeat_timestamp_seconds{pid}``, which ``/healthz`` on
METRICS_PORT reads; when not, it logs why (ERROR, once per wedge) and stops
recording, so ``/healthz`` turns 503 and the orchestrator restarts the pod.

Nothing here touches the broker: a Redis or RabbitMQ outage of any length
leaves a healthy process healthy (``/readyz`` reports the broker), so a
broker incident never makes Kubernetes restart the whole fleet at once.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from worker_service.observability.metrics import record_heartbeat

logger = logging.getLogger(__name__)


class Liveness(Middleware):
    """Parameters:
    interval_ms(int): how often the process checks itself (MAINTENANCE_INTERVAL_MS).
    default_time_limit_ms(int): the time limit of actors that declare none.
    wedge_grace_s(float): how long past its time limit a message may run before the process is wedged.
    """

    def __init__(self, *, interval_ms: int, default_time_limit_ms: int, wedge_grace_s: float) -> None:
        self.interval = interval_ms / 1000
        self.default_time_limit_ms = default_time_limit_ms
        self.wedge_grace_s = wedge_grace_s
        self.stop_event = threading.Event()
        #: thread ident -> (message id, actor, monotonic deadline)
        self.running: dict[int, tuple[str, str, float]] = {}
        self.threads: list[threading.Thread] = []
        self.reported: set[str] = set()

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.threads = [*worker.workers, *worker.consumers.values()]
        self.stop_event.clear()
        threading.Thread(target=self._loop, name="worker-liveness", daemon=True).start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop_event.set()

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        try:
            limit_ms = (
                broker.get_actor(message.actor_name).options.get("time_limit") or self.default_time_limit_ms
            )
        except Exception:  # noqa: BLE001 - unknown actor: it does not run
            return
        deadline = time.monotonic() + limit_ms / 1000 + self.wedge_grace_s
        self.running[threading.get_ident()] = (message.message_id, message.actor_name, deadline)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self.running.pop(threading.get_ident(), None)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.running.pop(threading.get_ident(), None)

    def problems(self) -> dict[str, str]:
        """Why this process cannot make progress, by what is stuck (empty when it can)."""
        found = {f"thread {t.name}": "died" for t in self.threads if not t.is_alive()}
        now = time.monotonic()
        for message_id, actor, deadline in list(self.running.values()):
            if now > deadline:
                found[f"message {message_id} of {actor}"] = (
                    f"runs {now - deadline + self.wedge_grace_s:.0f} s past its time limit "
                    "(stuck in native code or a blocking call?)"
                )
        return found

    def check(self) -> bool:
        problems = self.problems()
        if not problems:
            record_heartbeat()
            self.reported.clear()
            return True
        new = {what: why for what, why in problems.items() if what not in self.reported}
        if new:  # once per stuck thread or message, not every interval
            logger.error(
                "Worker process cannot make progress: %s; /healthz reports it.",
                "; ".join(f"{what} {why}" for what, why in new.items()),
            )
            self.reported.update(new)
        return False

    def _loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.check()
            except Exception as exc:  # noqa: BLE001 - a failed check must not end the checks
                logger.warning("Liveness check failed: %s", exc)
            self.stop_event.wait(self.interval)
