"""Warm hard-limit children at boot, so the first messages do not pay for the fork server and the forks.

Hook: ``after_worker_boot``.  A worker process that consumes one of ``queues``
(or every queue) starts one idle child per worker thread in a background
thread: the fork server's start (importing the PDF/DOCX libraries and the
extraction code) and the forks happen before its first message, not inside
the latency of the first ``threads`` extractions.  No actor options.

Parameters: queues (whose actors run hard-limited work), memory_mb
(EXTRACT_MEMORY_MB: a child with another cap would be replaced, not reused).
"""

from __future__ import annotations

import logging
import threading

import dramatiq
from dramatiq.middleware import Middleware

from worker_service.runtime.hardlimit import get_pool

logger = logging.getLogger(__name__)


class PrewarmChildren(Middleware):
    def __init__(self, *, queues: frozenset[str], memory_mb: int) -> None:
        self.queues = queues
        self.memory_mb = memory_mb
        self.warming: threading.Thread | None = None  # the boot's warm-up, when this worker runs extraction

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        consumed: set[str] | None = worker.consumer_whitelist or None
        if consumed is not None and not consumed & self.queues:
            return
        self.warming = threading.Thread(
            target=self._warm, args=(worker.worker_threads,), name="prewarm-children", daemon=True
        )
        self.warming.start()

    def _warm(self, children: int) -> None:
        try:
            get_pool().warm(children, self.memory_mb)
        except Exception:  # a cold start is slower, not broken: the pool starts children on demand
            logger.warning("Could not start %d extraction children in advance.", children, exc_info=True)
