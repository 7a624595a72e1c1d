"""Renews the leases of the records whose messages this worker process is running (database.tracks).

Hooks: ``before_process_message`` / ``after_process_message`` /
``after_skip_message`` (what runs now; a message skipped, e.g. put back by a
pause or a rate limit, renews its record's lease at once: it waits in a delay
queue), ``after_worker_boot`` (starts the thread), ``after_worker_shutdown``
(stops it).  Every ``interval_s`` one ``UPDATE`` per track renews the leases
of the records of the messages this process runs, and of those it holds that
the broker cannot report (RabbitMQ's prefetched deliveries), so the
reconciler never takes a slow or prefetched message for a lost one.  A
process that dies stops renewing: its records' leases expire and the
reconciler looks at them.  No actor options.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from worker_service.brokers.settle import reliable
from worker_service.database import session, tracks

logger = logging.getLogger(__name__)


class Leases(Middleware):
    """Parameters:
    interval_s(float): how often the leases of running records are renewed (well under RECONCILE_GRACE_SECONDS).
    """

    def __init__(self, *, interval_s: float) -> None:
        self.interval_s = interval_s
        self.running: dict[str, tuple[str, str]] = {}  # message id -> (track, asset id)
        self.stop_event = threading.Event()
        self.broker: dramatiq.Broker | None = None

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        track = tracks.track_of(broker, message)
        if track is not None:
            self.running[message.message_id] = (track.name, message.kwargs["asset_id"])

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
        track = tracks.track_of(broker, message)
        if track is None:
            return
        try:
            with session(transaction=True):
                tracks.renew_leases(track, [message.kwargs["asset_id"]], status=None)
        except Exception as exc:  # noqa: BLE001 - the next transition or round renews it
            logger.warning("Could not renew the lease of %s: %s", message.kwargs["asset_id"], exc)

    def after_worker_boot(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop_event.clear()
        self.broker = broker
        threading.Thread(target=self._loop, name="worker-leases", daemon=True).start()

    def after_worker_shutdown(self, broker: dramatiq.Broker, worker: dramatiq.Worker) -> None:
        self.stop_event.set()

    def renew(self) -> int:
        """One round: renew every running record's lease; how many were renewed."""
        running: dict[str, list[str]] = {}
        for track_name, asset_id in list(self.running.values()):  # one copy: threads add and pop
            running.setdefault(track_name, []).append(asset_id)
        held: dict[str, list[str]] = {}
        for message in reliable(self.broker).held_messages() if self.broker is not None else []:
            track = tracks.track_of(self.broker, message)
            if track is not None and message.message_id not in self.running:
                held.setdefault(track.name, []).append(message.kwargs["asset_id"])
        if not running and not held:
            return 0
        with session(transaction=True):
            return sum(tracks.renew_leases(tracks.TRACKS[name], ids) for name, ids in running.items()) + sum(
                tracks.renew_leases(tracks.TRACKS[name], ids, status=None) for name, ids in held.items()
            )

    def _loop(self) -> None:
        while not self.stop_event.wait(self.interval_s):
            try:
                self.renew()
            except Exception as exc:  # noqa: BLE001 - the database may be out; the next round renews
                logger.warning("Could not renew the leases of running records: %s", exc)
