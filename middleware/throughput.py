"""Per-minute counts of finished messages for the dashboard's charts, kept in Redis for a day.

Hooks: ``after_worker_boot`` (starts the flush thread), ``after_worker_shutdown`` (flushes and stops),
``after_process_message`` / ``after_skip_message`` (count).  Each message adds one to an in-process
counter ``(minute, queue, outcome)`` (outcome ``done`` or ``failed``: dead-lettered); a thread adds the
counters to ``<ns>:__stats__.<YYYYMMDDHHMM>`` (``HINCRBY queue:outcome``, expiring after 26 hours)
every few seconds, so the hot path makes no round trip.  Sidekiq keeps its history the same way.
No actor options.

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
        self.lock = threading.Lock()
        self.stop_event = threading.Event()
        self._minute, self._minute_ends = "", 0.0

    def _current_minute(self) -> str:
        """The UTC minute as its key suffix, formatted once a minute, not once a message."""
        now = time.time()
        if now >= self._minute_ends:
            self._minute, self._minute_ends = _minute(now), (now // 60 + 1) * 60
        return self._minute

    def _count(self, message: MessageProxy) -> None:
        key = (self._current_minute(), message.queue_name.removesuffix(".DQ"), "failed" if message.failed else "done")
        with self.lock:
            self.counts[key] += 1

    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        if message.failed or exception is None:  # a retry is neither: it comes back
            self._count(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if message.failed:
            self._count(message)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop_event.clear()
        threading.Thread(target=self._loop, name="worker-throughput", daemon=True).start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop_event.set()
        self.flush()

    def flush(self) -> None:
        with self.lock:
            counts, self.counts = self.counts, Counter()
        if not counts:
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for (minute, queue, outcome), n in counts.items():
                key = f"{self.namespace}:__stats__.{minute}"
                pipe.hincrby(key, f"{queue}:{outcome}", n)
                pipe.expire(key, KEEP_S)
            pipe.execute()
        except Exception as exc:  # noqa: BLE001 - keep them for the next flush
            with self.lock:
                self.counts.update(counts)
            logger.warning("Could not record throughput counts: %s", exc)

    def _loop(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            self.flush()
