"""Queues paused fleet-wide by an operator: their messages are not started.

Hook: ``before_process_message``.  The broker's consumers stop fetching from a
paused queue (brokers.redis); a message fetched before the pause and not
started yet is put back (a deferral, no attempt spent, not charged to its time
budget) and waits in its queue until it is resumed.  So within about two
seconds of a pause no new message of the queue starts, the ones running
finish, and nothing is lost.  No actor options.
"""

from __future__ import annotations

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage

from worker_service.brokers.settle import reliable
from worker_service.outcome import defer

PUT_BACK_MS = 2_000


class QueuePause(Middleware):
    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        if message.queue_name in reliable(broker).paused_queues():
            defer(message, PUT_BACK_MS, f"queue {message.queue_name} paused", charge_window=False)
            raise SkipMessage(f"queue {message.queue_name} is paused")
