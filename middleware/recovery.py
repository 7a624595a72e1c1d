"""Shutdown and crash recovery: heartbeats, dead-worker requeue, crash-loop accounting.

Hooks: ``after_process_boot`` (this worker process stops when its Dramatiq
main process dies, however it dies: supervision.die_with_parent; SIGUSR1
prints every thread's stack), ``before_worker_boot`` (registers this
process's queues before any consumer can fetch from them),
``after_worker_boot`` (starts the maintenance thread),
``before_worker_shutdown`` (the broker stops taking deliveries it would only
hand back), ``after_worker_shutdown`` (stops the maintenance thread),
``before_process_message`` (marks the
message started, so a worker death while running it counts as a crash),
``after_process_message`` / ``after_skip_message`` (what runs now).

Every ``MAINTENANCE_INTERVAL_MS`` the thread of every worker process
(a) heartbeats and reports what it is doing (host, pid, threads busy and
total, queues, RSS, the messages running: the dashboard's overview), (b)
registers the queues this process consumes and (c) asks
the broker to requeue everything held by workers silent for longer than
``HEARTBEAT_TIMEOUT_MS`` (brokers.redis, one Lua script, no ``KEYS``); on
RabbitMQ, which requeues a dead consumer's deliveries itself, (d) stores what
RabbitMQ dead-lettered for exceeding the delivery limit as ``crash_loop``
dead letters (brokers.rabbitmq).
Dramatiq's own recovery needs a 0.1 % maintenance lottery on the same
queue: ~12 minutes with one survivor; this brings messages back within the
heartbeat timeout plus one interval.  The heartbeat runs in its own thread,
so a process whose threads are all busy is not mistaken for a dead one.
A process that could not reach Redis for longer than the heartbeat timeout
(an outage, a failover) declares no one dead for two intervals after it is
back: the others were cut off too, and get the time to report before their
heartbeats are judged, so an outage neither requeues healthy work nor counts
crashes against it.  When the Redis master changes (its run id: a
failover), what this process's acks sets say it holds and no consumer of it
holds goes back to the queues: a settle lost in the switch is redelivered,
not held by a live worker forever.

Graceful shutdown itself is Dramatiq's (SIGTERM: stop taking work, finish
in-flight messages within ``--worker-shutdown-timeout``, which ``worker
run`` sets to ``SHUTDOWN_GRACE_SECONDS``; prefetched and delayed messages go
back to the broker); anything still running after the grace, or after a
second signal, stays in the acks set and is recovered by this loop.
No actor options.
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from worker_service.brokers.settle import reliable
from worker_service.observability.metrics import rss_bytes
from worker_service.runtime.supervision import die_with_parent

logger = logging.getLogger(__name__)


class Recovery(Middleware):
    """Parameters:
    interval_ms(int): maintenance period.
    """

    def __init__(self, *, interval_ms: int) -> None:
        self.interval = interval_ms / 1000
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.last_ok: float | None = None
        self.judge_after = 0.0  # monotonic time before which no other worker is declared dead
        self.master: str | None = None  # the run id of the Redis master last seen
        #: message id -> (actor, wall time it started): what this process is running now
        self.running: dict[str, tuple[str, float]] = {}
        self.threads = 0
        self.queues: list[str] = []

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        die_with_parent(signal.SIGTERM)
        # `kill -USR1 <pid>` prints every thread's stack to the real stderr (Dramatiq's log pipe is framed,
        # raw bytes would corrupt it): what a stuck worker process is waiting for.
        faulthandler.register(signal.SIGUSR1, file=sys.__stderr__ or sys.stderr, all_threads=True)

    def before_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        # Before any consumer starts: a queue must be in the registry before this process can hold one of its
        # messages, or a death before the first maintenance round would leave them to no one's recovery (and
        # the dashboard would call the queue unknown).  The rounds keep registering, so a failure here waits.
        try:
            reliable(broker).register_queues()
            reliable(broker).heartbeat()  # before the first fetch, so what it fetches is recoverable at once
        except Exception as exc:  # noqa: BLE001 - Redis down at boot: the consumers cannot fetch either
            logger.warning("Could not register this process's queues before starting: %s", exc)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        from dramatiq.worker import WorkerThread

        threads = sum(1 for t in threading.enumerate() if isinstance(t, WorkerThread) and t.is_alive())
        queues = sorted(worker.consumer_whitelist or broker.get_declared_queues())
        self.threads, self.queues = threads, queues
        logger.info(
            "Worker process ready: %d worker threads, queues %s.",
            threads,
            queues,
            extra={"worker_threads": threads, "queues": queues},
        )
        self.stop_event.clear()
        self.thread = threading.Thread(
            target=self._loop, args=(broker,), name="worker-maintenance", daemon=True
        )
        self.thread.start()

    def before_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        reliable(broker).stop_deliveries()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop_event.set()
        if self.thread is not None:  # its round ends before the broker closes the connections it uses
            self.thread.join(10)
        try:  # a graceful stop: off the overview's list at once, not "live" for a heartbeat timeout
            reliable(broker).withdraw_worker()
        except Exception as exc:  # noqa: BLE001 - the report then ages out as "lost"
            logger.warning("Could not withdraw this worker's report: %s", exc)

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.running[message.message_id] = (message.actor_name, time.time())
        try:
            reliable(broker).mark_started(message)
        except Exception as exc:  # noqa: BLE001 - crash accounting is best effort; the ack path is not
            logger.warning("Could not mark message %s as started: %s", message.message_id, exc)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self.running.pop(message.message_id, None)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self.running.pop(message.message_id, None)

    def report(self, broker: dramatiq.Broker) -> None:
        """What this process is doing, for the dashboard's overview (published with each heartbeat)."""
        now = time.time()
        running = sorted(list(self.running.items()), key=lambda item: item[1][1])  # one copy: threads add/pop
        reliable(broker).report_worker(
            {
                "host": socket.gethostname(),
                "pid": os.getpid(),
                "threads": self.threads,
                "busy": len(running),
                "queues": self.queues,
                "paused": sorted(reliable(broker).paused_queues()),
                "rss_bytes": rss_bytes(),
                "heartbeat_at": now,
                "current": [
                    {"message_id": mid, "actor": actor, "seconds": round(now - since, 1)}
                    for mid, (actor, since) in running[:10]
                ],
            }
        )

    def run_once(self, broker: dramatiq.Broker) -> tuple[int, int]:
        reliable(broker).heartbeat()
        now = time.monotonic()
        timeout_s = float(getattr(broker, "heartbeat_timeout", 60_000)) / 1000
        if self.last_ok is not None and now - self.last_ok > timeout_s:
            self.judge_after = now + 2 * self.interval
            logger.warning(
                "Redis was out of reach for %.0f s (longer than the heartbeat timeout): no worker is "
                "declared dead for %.1f s, while the others report again.",
                now - self.last_ok,
                2 * self.interval,
            )
        self.last_ok = now
        self._check_master(broker)
        reliable(broker).register_queues()
        try:
            self.report(broker)
        except Exception as exc:  # noqa: BLE001 - the overview is informative; recovery must go on
            logger.warning("Could not report this worker's state: %s", exc)
        drained = reliable(broker).drain_dead_lettered()
        if drained:
            logger.warning(
                "Stored %d message(s) RabbitMQ dead-lettered (delivery limit: crash loops).", drained
            )
        if now < self.judge_after:
            return 0, 0
        dead, requeued = reliable(broker).recover_dead_workers()
        if dead or requeued:
            logger.warning("Recovered %d message(s) from %d dead worker(s).", requeued, dead)
        return dead, requeued

    def _check_master(self, broker: dramatiq.Broker) -> None:
        """A new master (a failover) may lack the last settles this process wrote: what its acks sets say this
        process holds, and no consumer holds, goes back to the queues."""
        identity = getattr(broker, "master_identity", None)
        if identity is None:  # RabbitMQ: the broker redelivers what a lost channel held
            return
        master = identity()
        changed = self.master is not None and master != self.master
        self.master = master
        if changed:
            requeued = reliable(broker).reconcile_held()
            logger.warning(
                "The Redis master changed (run id %s): %d message(s) this process no longer holds went "
                "back to their queues.",
                master[:12],
                requeued,
            )

    def _loop(self, broker: dramatiq.Broker) -> None:
        while not self.stop_event.is_set():
            try:
                self.run_once(broker)
            except Exception as exc:  # noqa: BLE001 - keep the loop alive through broker outages
                logger.warning("Maintenance round failed: %s", exc)
            self.stop_event.wait(self.interval)
