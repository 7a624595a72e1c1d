"""Per-minute counts of finished messages for the dashboard's charts and per-actor table, kept in Redis for a day.

Hooks: ``after_worker_boot`` (starts the flush thread), ``after_worker_shutdown`` (flushes and stops),
``before_process_message`` (notes the start), ``after_process_message`` / ``after_skip_message`` (count).
Each message adds one to in-process counters: ``(minute, queue, outcome)`` (``done`` or ``failed``:
dead-lettered) for the charts, and ``(minute, actor, field)`` for the per-actor table (fields ``done``,
``failed``, ``retried`` and ``le<i>``, its run time's bucket, worker_service.observability.runtimes); a
thread adds them to ``<ns>:__stats__.<YYYYMMDDHHMM>`` and ``<ns>:__actors__.<YYYYMMDDHHMM>`` (``HINCRBY``,
expiring after 26 hours) every few seconds, so the hot path makes no round trip.  Sidekiq keeps its history
the same way.  No actor options.

Parameters: client (Redis: the rate limiter's, so RabbitMQ fleets have it too), interval_s, namespace.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from worker_service.observability.runtimes import bucket_of

logger = logging.getLogger(__name__)
KEEP_S = 26 * 3600


def _minute(now: float) -> str:
    return time.strftime("%Y%m%d%H%M", time.gmtime(now))


class Throughput(Middleware):
    def __init__(self, client: Any, *, interval_s: float = 5.0, namespace: str = "dramatiq") -> None:
        self.client = client
        self.interval_s = interval_s
        self.namespace = namespace
        self.counts: Counter[tuple[str, str, str]] = Counter()
        self.actor_counts: Counter[tuple[str, str, str]] = Counter()
        self.started: dict[str, float] = {}
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self._minute, self._minute_ends = "", 0.0

    def _current_minute(self) -> str:
        """The UTC minute as its key suffix, formatted once a minute, not once a message."""
        now = time.time()
        if now >= self._minute_ends:
            self._minute, self._minute_ends = _minute(now), (now // 60 + 1) * 60
        return self._minute

    def _count(self, message: MessageProxy, outcome: str) -> None:
        minute = self._current_minute()
        started = self.started.pop(message.message_id, None)
        with self.lock:
            if outcome != "retried":  # a retry is neither done nor failed on the charts: it comes back
                self.counts[(minute, message.queue_name.removesuffix(".DQ"), outcome)] += 1
            self.actor_counts[(minute, message.actor_name, outcome)] += 1
            if started is not None:
                self.actor_counts[
                    (minute, message.actor_name, f"le{bucket_of(time.monotonic() - started)}")
                ] += 1

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.started[message.message_id] = time.monotonic()

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._count(message, "failed" if message.failed else "done" if exception is None else "retried")

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if message.failed:
            self._count(message, "failed")
        else:  # put back (a deferral, a pause), not run: nothing to count
            self.started.pop(message.message_id, None)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop_event.clear()
        threading.Thread(target=self._loop, name="worker-throughput", daemon=True).start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop_event.set()
        self.flush()

    def flush(self) -> None:
        with self.lock:
            counts, self.counts = self.counts, Counter()
            actor_counts, self.actor_counts = self.actor_counts, Counter()
        if not counts and not actor_counts:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for prefix, table in (("__stats__", counts), ("__actors__", actor_counts)):
                for (minute, name, field), n in table.items():
                    key = f"{self.namespace}:{prefix}.{minute}"
                    pipe.hincrby(key, f"{name}:{field}", n)
                    pipe.expire(key, KEEP_S)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - keep them for the next flush
            with self.lock:
                self.counts.update(counts)
                self.actor_counts.update(actor_counts)
            logger.warning("Could not record throughput counts: %s", exc)

    def _loop(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            self.flush()
