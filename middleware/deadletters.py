"""Dead letters in the database: the one source of truth for failed messages.

The broker's consumer calls this module's :class:`DeadLetters` (its
``dead_letter_sink``) whenever a message is rejected: retries or time budget
spent, a permanent error, an invalid payload, an unknown actor, an
undecodable body, a crash loop.  The row keeps the payload whole (for
requeue), the *final* attempt's error and traceback, attempts, history and
timings; the message is then acked, so Dramatiq's ``.XQ`` never holds a
stale second copy.  If the database cannot take the row, the message is
re-enqueued with a ``dead_letter_pending`` option instead of being acked;
when it comes back the consumer stores it (and acks it only then) without
running its actor again.

The operator side (list, requeue, delete, purge) is worker_service/deadletters.py.
"""

from __future__ import annotations

import hashlib
import logging
from typing import Any

import dramatiq
import peewee
from dramatiq.broker import MessageProxy
from dramatiq.message import Message
from dramatiq.middleware import Middleware

from worker_service.brokers.settle import reliable
from worker_service.database import DeadLetter, session, tracks
from worker_service.deadletters import ERROR_TYPES, ms_to_dt
from worker_service.outcome import PENDING_DEAD_LETTER, Dead, Successor

logger = logging.getLogger(__name__)
PENDING_RETRY_MS = 10_000
#: a message refused as ``forbidden`` (a Kommo webhook with a wrong token) can be sent by anyone, at any size, and
#: can never succeed on requeue: its string arguments are kept to this many characters, with their size and hash
FORBIDDEN_KEEP_CHARS = 2_000


class DeadLetters(Middleware):
    """The dead-letter sink the broker's consumer writes to.  No actor options.

    Hooks: ``after_process_boot`` (attaches itself to the broker, and keeps the
    broker to look up which record a message tracks).  The recording happens
    in the consumer's reject path, not in a hook, because after-hooks cannot
    stop an ack (see brokers.settle).

    A dead letter finishes its record: if the message tracks an asset or its
    knowledge (``status_track``), the record ends ``failed`` with the dead
    letter's code in the same transaction as the row (database.tracks.fail:
    never a newer generation, never a finished record).  Both are written, or
    neither, and the message comes back later with the pending marker.
    """

    def __init__(self) -> None:
        self.broker: dramatiq.Broker | None = None

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        self.broker = broker
        reliable(broker).dead_letter_sink = self

    def record(self, message: MessageProxy | Message, dead: Dead) -> None:
        data = message.asdict() if isinstance(message, Message) else message._message.asdict()
        options = dict(data.get("options") or {})
        options.pop(PENDING_DEAD_LETTER, None)
        track = tracks.track_of(self.broker, message) if self.broker is not None else None
        error_type = dead.error_type if dead.error_type in ERROR_TYPES else "permanent_error"
        args, kwargs = list(data.get("args") or []), data.get("kwargs") or {}
        if error_type == "forbidden":
            args, kwargs = [_cut(v) for v in args], {k: _cut(v) for k, v in kwargs.items()}
        with session(transaction=True) as db:
            DeadLetter.create(
                message_id=data["message_id"],
                queue=data["queue_name"].removesuffix(".DQ"),
                actor=data["actor_name"],
                args=args,
                kwargs=kwargs,
                options=options,
                error_type=error_type,
                error_code=dead.error_code[:255] or error_type,
                asset_id=_named_asset(kwargs),
                exception_type=dead.exception_type,
                error_message=dead.error_message[:10_000],
                traceback=dead.traceback,
                attempts=int(options.get("retries", 0)) + (0 if error_type == "crash_loop" else 1),
                history=options.get("attempt_history"),
                first_enqueued_at=ms_to_dt(
                    int(options.get("budget_started_at") or data["message_timestamp"])
                ),
            )
            finished = track is not None and self._fail_record(db, track, message, dead)
        # Logged from the consumer's settle step, after the message's own log context is gone: name it.
        logger.warning(
            "Dead-lettered message %s of %s: %s: %s%s",
            data["message_id"],
            data["actor_name"],
            error_type,
            dead.error_message,
            f" ({track.name} record failed)" if finished and track else "",
            extra={
                "message_id": data["message_id"],
                "actor": data["actor_name"],
                "queue": data["queue_name"],
                "error_type": error_type,
                "asset_id": message.kwargs.get("asset_id") if track else None,
            },
        )

    @staticmethod
    def _fail_record(
        db: peewee.Database, track: tracks.Track, message: MessageProxy | Message, dead: Dead
    ) -> bool:
        """Fail the tracked record inside the dead letter's transaction.  A record the database refuses (a
        constraint, a value it cannot take) is logged and skipped in a savepoint: it must not cost the dead
        letter itself, nor send it round as pending forever.  An outage still aborts both."""
        try:
            with db.atomic():
                return tracks.fail(
                    track,
                    message.kwargs["asset_id"],
                    message.kwargs,
                    tracks.generation_of(message),
                    dead.error_code,
                    f"{dead.exception_type}: {dead.error_message}"
                    if dead.exception_type
                    else dead.error_message,
                    attempt=int(message.options.get("retries", 0)) + 1,
                )
        except (peewee.IntegrityError, peewee.DataError, peewee.ProgrammingError) as exc:
            logger.error(
                "Dead letter of %s stored, but its %s record could not be failed: %s",
                message.message_id,
                track.name,
                exc,
            )
            return False

    def record_raw(self, queue: str, body: bytes, error_type: str, error_message: str) -> None:
        from worker_service.brokers.redis import encode_raw_body

        with session(transaction=True):
            DeadLetter.create(
                message_id="",
                queue=queue.removesuffix(".DQ"),
                actor="",
                args=[],
                kwargs={},
                options={},
                raw_body=encode_raw_body(body)[:1_000_000],
                error_type=error_type,
                error_code=error_type,
                exception_type="DecodeError",
                error_message=error_message[:10_000],
                attempts=0,
            )
        logger.warning("Dead-lettered an undecodable message on %s: %s", queue, error_message)

    def pending_successor(self, message: MessageProxy | Message, dead: Dead) -> Successor:
        """The copy that carries ``dead`` until the database takes it (the consumer stores it, never runs it)."""
        raw = message if isinstance(message, Message) else message._message
        return Successor(raw.copy(options={PENDING_DEAD_LETTER: dead.as_option()}), PENDING_RETRY_MS)


def _named_asset(kwargs: Any) -> str | None:
    """The asset a message's kwargs name (``asset_id``), when it is a plausible id."""
    asset_id = kwargs.get("asset_id") if isinstance(kwargs, dict) else None
    return asset_id if isinstance(asset_id, str) and 0 < len(asset_id) <= 200 else None


def _cut(value: Any) -> Any:
    if not isinstance(value, str) or len(value) <= FORBIDDEN_KEEP_CHARS:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()
    return (
        f"{value[:FORBIDDEN_KEEP_CHARS]}... [{len(value)} characters, sha256 {digest}: a message refused as "
        "forbidden is not kept whole]"
    )
