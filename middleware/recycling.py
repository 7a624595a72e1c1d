"""Memory recycling: a worker process over its RSS cap, or past its message count, is replaced gracefully.

Hooks: ``after_worker_boot`` (publishes the cap), ``after_process_message``,
``after_skip_message``.  No actor options.

Dramatiq 2.2's CLI does not respawn a lone exited worker process (it stops
the siblings and exits), so a process asks its master for a graceful reload
(SIGHUP): every process finishes its in-flight messages, prefetched ones go
back to the broker, and the master re-executes itself with fresh processes.
Nothing is lost; a message in flight during a forced exit would still be
recovered by the maintenance loop.
"""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from worker_service.observability.metrics import RSS_LIMIT, rss_bytes

logger = logging.getLogger(__name__)


class Recycling(Middleware):
    """Parameters: max_rss_mb (0: no cap), max_messages (0: no limit)."""

    #: RSS is read from /proc at most this often: a per-message read costs ~15 % of a no-op drain.
    RSS_CHECK_SECONDS = 1.0

    def __init__(self, *, max_rss_mb: int, max_messages: int) -> None:
        self.max_rss = max_rss_mb * 1024 * 1024
        self.max_messages = max_messages
        self.handled = 0
        self.requested = False
        self.next_rss_check = 0.0

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        if self.max_rss:
            RSS_LIMIT.labels(str(os.getpid())).set(self.max_rss)

    def _check(self) -> None:
        self.handled += 1
        if self.requested:
            return
        reason = None
        now = time.monotonic()
        rss = 0
        if self.max_rss and now >= self.next_rss_check:
            self.next_rss_check = now + self.RSS_CHECK_SECONDS
            rss = rss_bytes()
        if self.max_rss and rss > self.max_rss:
            reason = f"RSS {rss // 2**20} MB over WORKER_MAX_RSS_MB={self.max_rss // 2**20}"
        elif self.max_messages and self.handled >= self.max_messages:
            reason = f"handled {self.handled} messages (WORKER_MAX_MESSAGES={self.max_messages})"
        if reason is None or os.getppid() <= 1:
            return
        self.requested = True
        logger.warning("Recycling worker processes: %s; asking the master for a graceful reload.", reason)
        os.kill(os.getppid(), signal.SIGHUP)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._check()

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._check()
