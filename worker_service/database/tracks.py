"""The two state machines of an asset record, and their conditional writes.

``asset``: received -> processing <-> retrying -> extracted | failed.
``knowledge``: pending -> processing <-> retrying -> done | skipped | failed.

Every transition is one conditional ``UPDATE`` (never read-then-write) and
is timestamped.  Transitions are monotonic within a *generation*: the
generation of a message is ``options["generation"]`` (set when a dead letter
is requeued or a lost message rebuilt) or its ``message_timestamp``,
tie-broken by message_id.  A message of a newer generation resets the
record; a message of an older generation can never change it.

Writers: the status middleware (start, success, skip, retry), the
dead-letter sink (failure, in the dead letter's own transaction) and the
reconciler (records whose message was lost).  A terminal status records its
outcome event in the same transaction (database.outbox); every transition adds
a row to the asset's history (``StatusChange``, ``GET /api/assets/ID/history``).

Leases (``lease_at``, ``knowledge_lease_at``): a record under way presumes its
message alive until ``RECONCILE_GRACE_SECONDS`` past its lease.  Each
transition sets it (a retry's to its next attempt), the worker running the
message renews it (middleware.leases) and a terminal status clears it, so the
reconciler finds the records to look at through an index, at a cost that
grows with the expired leases, not with the backlog.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import peewee
from pydantic import TypeAdapter, ValidationError
from worker_contracts.payloads import DEFAULT_WORKSPACE, Identifier

from worker_service.database import outbox
from worker_service.database.models import Asset, DeletedAsset, StatusChange, utcnow

Generation = tuple[int, str]
_ASSET_ID: TypeAdapter[str] = TypeAdapter(Identifier)


@dataclass(frozen=True)
class Track:
    name: str
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

    @property
    def terminal(self) -> tuple[str, ...]:
        return (self.success, "failed") if self.name == "asset" else (self.success, "skipped", "failed")

    def same(self, generation: Generation) -> peewee.Expression:
        return (self.col("gen_ts") == generation[0]) & (self.col("gen_id") == generation[1])

    def older_than(self, generation: Generation) -> peewee.Expression:
        """The record's generation is strictly older than ``generation``."""
        ts, gid = generation
        return (self.col("gen_ts") < ts) | ((self.col("gen_ts") == ts) & (self.col("gen_id") < gid))


TRACKS: dict[str, Track] = {
    # New content resets the knowledge state in store_result's transaction, before extract_knowledge is sent;
    # resetting it here too, after the actor, would clobber a knowledge message that had already started.
    "asset": Track("asset", prefix="", initial="received", success="extracted", creates_record=True),
    "knowledge": Track(
        "knowledge", prefix="knowledge_", initial="pending", success="done", creates_record=False
    ),
}


def _history(
    track: Track, asset_id: str, status: str, attempt: int | None = None, error_code: str | None = None
) -> None:
    StatusChange.insert(
        asset_id=asset_id,
        track=track.name,
        status=status,
        attempt=attempt,
        error_code=error_code,
        at=utcnow(),
    ).execute()


#: the actors whose messages move a track (their ``status_track`` option; tests/test_architecture.py keeps
#: the two in step), for code that sees messages without the actors (the dashboard purging a queue)
TRACKED_ACTORS: dict[str, str] = {"process_asset": "asset", "extract_knowledge": "knowledge"}


def generation_of(message: Any) -> Generation:
    return int(message.options.get("generation") or message.message_timestamp), str(message.message_id)


def track_of(broker: Any, message: Any) -> Track | None:
    """The track a message moves (its actor's ``status_track`` option), if it names an asset."""
    try:
        name = broker.get_actor(message.actor_name).options.get("status_track")
    except Exception:  # noqa: BLE001 - unknown actor
        return None
    kwargs = message.kwargs if isinstance(message.kwargs, dict) else {}
    if not name:
        return None
    try:  # an id the contract refuses (too long, odd characters) names no record we could write
        _ASSET_ID.validate_python(kwargs.get("asset_id"))
    except ValidationError:
        return None
    return TRACKS[name]


def source_fields(kwargs: dict[str, Any]) -> dict[str, Any]:
    """What a ``process_asset`` message carries that the record keeps, so a lost message can be rebuilt."""
    lead = kwargs.get("crm_lead_id")
    workspace = kwargs.get("workspace")
    return {
        "source": kwargs.get("source") if isinstance(kwargs.get("source"), str) else None,
        "workspace": workspace if isinstance(workspace, str) and workspace else DEFAULT_WORKSPACE,
        "filename": kwargs.get("filename") if isinstance(kwargs.get("filename"), str) else None,
        "content_type": kwargs.get("content_type") if isinstance(kwargs.get("content_type"), str) else None,
        "crm_lead_id": lead if isinstance(lead, int) and not isinstance(lead, bool) else None,
    }


def _ensure_record(track: Track, asset_id: str, kwargs: dict[str, Any], generation: Generation) -> None:
    """Create the record a message of ``generation`` starts, unless the asset was deleted after that generation
    began (a message running or queued at the deletion writes nothing back; an upload after it starts afresh)."""
    if (
        track.creates_record
        and not DeletedAsset.select()
        .where(DeletedAsset.asset_id == asset_id, DeletedAsset.deleted_at_ms >= generation[0])
        .exists()
    ):
        (
            Asset.insert(
                asset_id=asset_id,
                gen_ts=generation[0],
                gen_id=generation[1],
                status=track.initial,
                **source_fields(kwargs),
            )
            .on_conflict_ignore()
            .execute()
        )


def start(track: Track, asset_id: str, kwargs: dict[str, Any], generation: Generation, attempt: int) -> str:
    """Move the record to ``processing`` for this attempt.

    Returns ``"started"``, ``"stale"`` (a newer generation owns the record, or this one is finished)
    or ``"missing"`` (no record and this track does not create one).  Call inside a transaction.
    """
    _ensure_record(track, asset_id, kwargs, generation)
    now = utcnow()
    values = track.values(
        status="processing",
        attempts=attempt,
        gen_ts=generation[0],
        gen_id=generation[1],
        started_at=now,
        finished_at=None,
        error_code=None,
        error_message=None,
        next_attempt_at=None,
        lease_at=now,
    )
    values[Asset.updated_at] = now
    if track.creates_record:
        values.update({getattr(Asset, k): v for k, v in source_fields(kwargs).items()})
    changed = (
        Asset.update(values)
        .where(
            Asset.asset_id == asset_id,
            (track.same(generation) & track.col("status").in_(track.active)) | track.older_than(generation),
        )
        .execute()
    )
    if changed:
        _history(track, asset_id, "processing", attempt)
        return "started"
    return "stale" if Asset.select().where(Asset.asset_id == asset_id).exists() else "missing"


def finish(
    track: Track,
    asset_id: str,
    generation: Generation,
    values: dict[peewee.Field, Any],
    *,
    attempt: int | None = None,
) -> bool:
    """Write the end of this attempt, only while this generation's record is still ``processing``.

    A terminal status also records its outcome event (database.outbox), in the same transaction.
    """
    values = {**values, Asset.updated_at: utcnow()}
    status = values.get(track.col("status"))
    if status is not None:
        # a retry's message is due at its next attempt; a finished record has no message to wait for
        values[track.col("lease_at")] = (
            (values.get(track.col("next_attempt_at")) or utcnow()) if status in track.active else None
        )
    changed = bool(
        Asset.update(values)
        .where(Asset.asset_id == asset_id, track.same(generation), track.col("status") == "processing")
        .execute()
    )
    if changed and status is not None:
        _history(track, asset_id, status, attempt, values.get(track.col("error_code")))
        if status in track.terminal:
            outbox.record(track.name, asset_id, status, values.get(track.col("error_code")))
    return changed


def fail(
    track: Track,
    asset_id: str,
    kwargs: dict[str, Any],
    generation: Generation,
    error_code: str,
    error_message: str,
    *,
    attempt: int | None = None,
) -> bool:
    """End the record ``failed`` for a message of ``generation`` that died (any path).

    Changes a record of this generation that is not terminal yet, or of an older generation (the
    message died before it ever started, e.g. an invalid payload); never a newer one, never a
    finished one.  Call inside the transaction that stores the dead letter.
    """
    _ensure_record(track, asset_id, kwargs, generation)
    now = utcnow()
    values = track.values(
        status="failed",
        gen_ts=generation[0],
        gen_id=generation[1],
        error_code=error_code,
        error_message=error_message[:4000],
        finished_at=now,
        next_attempt_at=None,
        lease_at=None,
    )
    values[Asset.updated_at] = now
    changed = bool(
        Asset.update(values)
        .where(
            Asset.asset_id == asset_id,
            (track.same(generation) & track.col("status").in_(track.active)) | track.older_than(generation),
        )
        .execute()
    )
    if changed:
        _history(track, asset_id, "failed", attempt, error_code)
        outbox.record(track.name, asset_id, "failed", error_code)
    return changed


def renew_leases(track: Track, asset_ids: list[str], *, status: str | None = "processing") -> int:
    """The messages of these records are alive (running; or held, put back: ``status=None``): their leases start
    again now, for the records still under way (in ``status``, when given)."""
    if not asset_ids:
        return 0
    condition = track.col("status") == status if status else track.col("status").in_(track.active)
    return int(
        Asset.update(track.values(lease_at=utcnow()))
        .where(Asset.asset_id.in_(asset_ids), condition)
        .execute()
    )


def mark_lost(
    track: Track, asset_id: str, generation: Generation, error_message: str, stale_before: datetime
) -> bool:
    """End a record whose message is gone and cannot be rebuilt: ``failed`` / ``message_lost``.

    Only if it is still this generation, not terminal, and its lease not renewed since ``stale_before``.
    """
    now = utcnow()
    values = track.values(
        status="failed",
        error_code="message_lost",
        error_message=error_message[:4000],
        finished_at=now,
        next_attempt_at=None,
        lease_at=None,
    )
    values[Asset.updated_at] = now
    changed = bool(
        Asset.update(values)
        .where(
            Asset.asset_id == asset_id,
            track.same(generation),
            track.col("status").in_(track.active),
            track.col("lease_at") <= stale_before,
        )
        .execute()
    )
    if changed:
        _history(track, asset_id, "failed", None, "message_lost")
        outbox.record(track.name, asset_id, "failed", "message_lost")
    return changed
