"""Status tracking: the asset and knowledge state machines, written by middleware only.

Hooks: ``before_process_message``, ``after_process_message``.

Actor option:
  status_track(str): ``"asset"`` or ``"knowledge"`` (database.tracks).  The
    record is the asset named by the ``asset_id`` kwarg.

Before the actor runs, the record moves to ``processing`` for this
generation; a message of an older generation, or a late duplicate of a
finished one, is skipped without running the actor.  After it, the
:mod:`outcome` decides: ``Succeeded`` -> extracted/done, ``Skipped`` ->
skipped, ``Retrying`` -> retrying.  ``Dead`` is not written here: the
dead-letter sink fails the record in the same transaction as the dead
letter, whichever path killed the message (this middleware, the consumer's
crash-loop guard, a pending dead letter), so a record can never stay
``processing`` behind a dead letter, nor turn ``failed`` without one.

No ack without its record: if the database cannot take a transition, the
message is deferred (re-enqueued with the ack, no attempt spent) instead of
being acked with a stale status.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage

from worker_service.brokers.settle import get_successor, set_successor
from worker_service.database import DatabaseUnavailable, session, tracks, utcnow
from worker_service.database.tracks import Track
from worker_service.outcome import Retrying, Skipped, Succeeded, attempt_number, defer, outcome_of, state_of

logger = logging.getLogger(__name__)
DB_RETRY_MS = 5_000


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


class StatusTracking(Middleware):
    """Writes status transitions for actors that declare ``status_track``."""

    @property
    def actor_options(self) -> set[str]:
        return {"status_track"}

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        track = tracks.track_of(broker, message)
        if track is None:
            return
        try:
            with session(transaction=True):
                started = tracks.start(
                    track,
                    message.kwargs["asset_id"],
                    message.kwargs,
                    tracks.generation_of(message),
                    attempt_number(message),
                )
        except DatabaseUnavailable as exc:
            logger.warning("Status store unavailable (%s); deferring message %s.", exc, message.message_id)
            defer(message, DB_RETRY_MS, "database_unavailable")
            raise SkipMessage("database unavailable") from None
        if started == "stale":
            logger.info("Skipping message %s: its generation is finished or superseded.", message.message_id)
            raise SkipMessage("stale or duplicate message")
        state_of(message).record_started = started == "started"

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        state = state_of(message)
        if not state.record_started:
            return
        track = tracks.track_of(broker, message)
        if track is None:
            return
        now = utcnow()
        outcome = outcome_of(message) or (Succeeded() if exception is None else None)
        if isinstance(outcome, Succeeded):
            values = track.values(status=track.success, finished_at=now, last_error=None)
        elif isinstance(outcome, Skipped):
            values = track.values(status="skipped", finished_at=now, error_message=outcome.reason[:4000])
        elif isinstance(outcome, Retrying):
            values = track.values(
                status="retrying", next_attempt_at=_from_ms(outcome.at_ms), last_error=outcome.error
            )
        else:  # Dead: the dead-letter sink fails the record with the dead letter; Deferred: stays as it is
            return
        self._finish(message, track, values)

    def _finish(self, message: MessageProxy, track: Track, values: dict[Any, Any]) -> None:
        try:
            with session(transaction=True):
                changed = tracks.finish(
                    track,
                    message.kwargs["asset_id"],
                    tracks.generation_of(message),
                    values,
                    attempt=attempt_number(message),
                )
        except DatabaseUnavailable:
            self._keep_for_later(message)
            return
        if not changed:
            logger.info(
                "Status of %s not changed by %s: a newer generation owns it.",
                message.kwargs["asset_id"],
                message.message_id,
            )

    def _keep_for_later(self, message: MessageProxy) -> None:
        """The outcome could not be recorded: run this attempt again later instead of acking it."""
        logger.warning("Status store unavailable; message %s will run again.", message.message_id)
        if get_successor(message) is None:
            set_successor(message, message._message.copy(), DB_RETRY_MS)
