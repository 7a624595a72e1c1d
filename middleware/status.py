"""Status tracking: the asset and knowledge state machines, written by middleware only.

Hooks: ``before_process_message``, ``after_process_message``, ``after_skip_message``.

Actor option:
  status_track(str): ``"asset"`` (received -> processing <-> retrying ->
    extracted | failed) or ``"knowledge"`` (pending -> processing <->
    retrying -> done | skipped | failed).  The record is the asset named by
    the ``asset_id`` kwarg.

Every transition is one conditional ``UPDATE`` (never read-then-write) and
is timestamped.  Transitions are monotonic within a *generation*: the
generation of a message is ``options["generation"]`` (set when a dead
letter is requeued) or its ``message_timestamp``, tie-broken by message_id.
A message of a newer generation resets the record; a message of an older
generation, or a late duplicate of a finished one, is skipped without
running the actor.  Retries keep their generation.

No ack without its record: if the database cannot take a transition, the
message is deferred (re-enqueued with the ack, no attempt spent) instead of
being acked with a stale status.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import dramatiq
import peewee
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage

from brokers.settle import get_successor, set_successor
from database import Asset, DatabaseUnavailable, session, utcnow
from middleware.errors import SkipWork
from middleware.retries import attempt_number, defer

logger = logging.getLogger(__name__)
DB_RETRY_MS = 5_000


@dataclass(frozen=True)
class Track:
    prefix: str  # column prefix: "" for the asset, "knowledge_" for knowledge
    initial: str
    success: str
    creates_record: bool

    def col(self, name: str) -> peewee.Field:
        return getattr(Asset, f"{self.prefix}{name}")

    def values(self, **kwargs: Any) -> dict[peewee.Field, Any]:
        return {self.col(k): v for k, v in kwargs.items()}

    @property
    def active(self) -> tuple[str, ...]:
        return (self.initial, "processing", "retrying")


TRACKS: dict[str, Track] = {
    # New content resets the knowledge state in store_result's transaction, before extract_knowledge is sent;
    # resetting it here too, after the actor, would clobber a knowledge message that had already started.
    "asset": Track(prefix="", initial="received", success="extracted", creates_record=True),
    "knowledge": Track(prefix="knowledge_", initial="pending", success="done", creates_record=False),
}


def generation_of(message: Any) -> tuple[int, str]:
    return int(message.options.get("generation") or message.message_timestamp), str(message.message_id)


def _from_ms(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None)


class StatusTracking(Middleware):
    """Writes status transitions for actors that declare ``status_track``."""

    @property
    def actor_options(self) -> set[str]:
        return {"status_track"}

    def _track(self, broker: dramatiq.Broker, message: MessageProxy) -> Track | None:
        try:
            name = broker.get_actor(message.actor_name).options.get("status_track")
        except Exception:  # noqa: BLE001 - unknown actor
            return None
        asset_id = message.kwargs.get("asset_id") if isinstance(message.kwargs, dict) else None
        if not name or not isinstance(asset_id, str) or not asset_id:
            return None
        return TRACKS[name]

    # --- before -------------------------------------------------------------------
    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        track = self._track(broker, message)
        if track is None:
            return
        asset_id = message.kwargs["asset_id"]
        ts, gid = generation_of(message)
        now = utcnow()
        try:
            with session(transaction=True):
                if track.creates_record:
                    self._create(asset_id, message.kwargs, ts, gid, track.initial)
                same = (track.col("gen_ts") == ts) & (track.col("gen_id") == gid)
                newer = (track.col("gen_ts") < ts) | ((track.col("gen_ts") == ts) & (track.col("gen_id") < gid))
                values = track.values(status="processing", attempts=attempt_number(message), gen_ts=ts, gen_id=gid,
                                      started_at=now, finished_at=None, error_code=None, error_message=None,
                                      next_attempt_at=None)
                values[Asset.updated_at] = now
                if track.creates_record:
                    values.update(self._source_fields(message.kwargs))
                changed = (Asset.update(values)
                           .where(Asset.asset_id == asset_id, (same & track.col("status").in_(track.active)) | newer)
                           .execute())
                exists = changed or Asset.select().where(Asset.asset_id == asset_id).exists()
        except DatabaseUnavailable as exc:
            logger.warning("Status store unavailable (%s); deferring message %s.", exc, message.message_id)
            defer(message, DB_RETRY_MS, "database_unavailable")
            message.__dict__["status_skip"] = True
            raise SkipMessage("database unavailable") from None
        if not changed and exists:
            logger.info("Skipping message %s: its generation is finished or superseded.", message.message_id)
            message.__dict__["status_skip"] = True
            raise SkipMessage("stale or duplicate message")
        message.__dict__["status_started"] = bool(changed)

    @staticmethod
    def _source_fields(kwargs: dict[str, Any]) -> dict[peewee.Field, Any]:
        return {Asset.source: kwargs.get("source"), Asset.filename: kwargs.get("filename"),
                Asset.content_type: kwargs.get("content_type"), Asset.crm_lead_id: kwargs.get("crm_lead_id")}

    @staticmethod
    def _create(asset_id: str, kwargs: dict[str, Any], ts: int, gid: str, status: str) -> None:
        (Asset.insert(asset_id=asset_id, gen_ts=ts, gen_id=gid, status=status, source=kwargs.get("source"),
                      filename=kwargs.get("filename"), content_type=kwargs.get("content_type"),
                      crm_lead_id=kwargs.get("crm_lead_id"))
         .on_conflict_ignore().execute())

    # --- after ----------------------------------------------------------------------
    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        track = self._track(broker, message)
        if track is None or message.__dict__.get("status_skip") or not message.__dict__.get("status_started"):
            return
        now = utcnow()
        outcome = message.__dict__.get("outcome")
        if exception is None:
            values = track.values(status=track.success, finished_at=now, last_error=None)
        elif isinstance(exception, SkipWork):
            values = track.values(status="skipped", finished_at=now, error_message=str(exception)[:4000])
        elif outcome and outcome[0] == "retrying":
            values = track.values(status="retrying", next_attempt_at=_from_ms(outcome[1]), last_error=outcome[2])
        elif outcome and outcome[0] == "failed":
            values = track.values(status="failed", finished_at=now, error_code=outcome[1], error_message=outcome[2])
        else:
            return
        self._finish(message, track, values)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        track = self._track(broker, message)
        outcome = message.__dict__.get("outcome")
        if track is None or message.__dict__.get("status_skip") or not outcome or outcome[0] != "failed":
            return
        # Rejected before it started (invalid payload, age limit): record the failure as its own generation.
        ts, gid = generation_of(message)
        try:
            with session(transaction=True):
                if track.creates_record:
                    self._create(message.kwargs["asset_id"], message.kwargs, ts, gid, track.initial)
                newer = (track.col("gen_ts") < ts) | ((track.col("gen_ts") == ts) & (track.col("gen_id") <= gid))
                values = track.values(status="failed", gen_ts=ts, gen_id=gid, error_code=outcome[1],
                                      error_message=outcome[2], finished_at=utcnow())
                values[Asset.updated_at] = utcnow()
                Asset.update(values).where(Asset.asset_id == message.kwargs["asset_id"], newer).execute()
        except DatabaseUnavailable:
            self._keep_for_later(message)

    def _finish(self, message: MessageProxy, track: Track, values: dict[peewee.Field, Any]) -> None:
        ts, gid = generation_of(message)
        values[Asset.updated_at] = utcnow()
        try:
            with session(transaction=True):
                changed = (Asset.update(values)
                           .where(Asset.asset_id == message.kwargs["asset_id"], track.col("gen_ts") == ts,
                                  track.col("gen_id") == gid, track.col("status") == "processing")
                           .execute())
        except DatabaseUnavailable:
            self._keep_for_later(message)
            return
        if not changed:
            logger.info("Status of %s not changed by %s: a newer generation owns it.", message.kwargs["asset_id"],
                        message.message_id)

    def _keep_for_later(self, message: MessageProxy) -> None:
        """The outcome could not be recorded: run this attempt again later instead of acking it."""
        logger.warning("Status store unavailable; message %s will run again.", message.message_id)
        if get_successor(message) is None or message.failed:
            message.failed = False
            set_successor(message, message._message.copy(), DB_RETRY_MS)
