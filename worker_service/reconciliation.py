"""The reconciler: no record stays non-terminal once its message is gone.

A broker can lose messages the database still waits for: a Redis failover
with asynchronous replication, a restore from an older AOF, an operator's
``FLUSHDB`` or ``queue.purge``, a send that failed after the status was
written.  Every ``RECONCILE_INTERVAL_SECONDS`` one process of the fleet (the
holder of a lease in Redis) looks, per track, at the records whose lease
expired ``RECONCILE_GRACE_SECONDS`` ago (database.tracks: set at every
transition, renewed while the message runs, cleared when terminal; found
through an index, so a round costs what the expired leases cost, whatever
the backlog) and asks the broker how many messages its queue holds
(queued, delayed or held by a worker on Redis; ready on RabbitMQ, whose
delayed messages are retries leased to their next attempt and whose held
ones are renewed by the workers holding them):

* none: every such record has lost its message;
* a few (at most :data:`SCAN_LIMIT`, on Redis): the queue is read, and a
  record is missing when no message for it is there;
* more, or on RabbitMQ, which cannot list a queue: nothing is decided this
  round; its backlog may hold them.

A record is repaired only when found missing in *two consecutive rounds*
(one look is not a snapshot: a message moving from a delay queue to its
queue can be missed once).

Repair: the message is rebuilt from what the record keeps (source,
filename, content type, CRM lead, generation) and enqueued in the record's
own generation, so it carries on where it stopped; a record that cannot be
rebuilt (no source, knowledge of an asset without text) or was already
rebuilt ``MAX_REBUILDS`` times ends ``failed`` with ``message_lost``.  Each
repair is logged, audited (dashboard: Audit), and counted in
``worker_reconciled_total{track,action}``.

:func:`decide` is the whole decision, without a broker or a database.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, Literal

from dramatiq.message import Message
from worker_contracts.sender import InvalidPayload, validate_payload

from worker_service.database import Asset, AuditEntry, session, utcnow
from worker_service.database.tracks import TRACKS, Generation, Track, mark_lost

logger = logging.getLogger(__name__)

MAX_REBUILDS = 3
#: the actor that does each track's work, by its pinned contract name
ACTORS = {"asset": ("process_asset", "assets"), "knowledge": ("extract_knowledge", "knowledge")}
CANDIDATE_LIMIT = 1000
#: the largest backlog read whole to tell which expired records still have a message (Redis)
SCAN_LIMIT = 10_000


@dataclass(frozen=True)
class Candidate:
    """A record not terminal and unchanged for the grace period."""

    track: str
    asset_id: str
    status: str
    generation: Generation
    source: str | None = None
    filename: str | None = None
    content_type: str | None = None
    crm_lead_id: int | None = None
    workspace: str | None = None
    asset_status: str | None = None

    @property
    def key(self) -> str:
        return f"{self.track}:{self.asset_id}"


@dataclass(frozen=True)
class Repair:
    candidate: Candidate
    action: Literal["requeued", "failed"]
    reason: str


def rebuild_kwargs(candidate: Candidate) -> dict[str, Any] | None:
    """The payload of the lost message, or None when the record does not keep enough to rebuild it."""
    if candidate.track == "knowledge":
        return {"asset_id": candidate.asset_id} if candidate.asset_status == "extracted" else None
    if not candidate.source:
        return None
    kwargs: dict[str, Any] = {"asset_id": candidate.asset_id, "source": candidate.source}
    for name in ("filename", "content_type", "crm_lead_id", "workspace"):
        if getattr(candidate, name) is not None:
            kwargs[name] = getattr(candidate, name)
    actor_name = ACTORS[candidate.track][0]
    try:
        validate_payload(actor_name, kwargs)
    except InvalidPayload:
        return None
    return kwargs


def decide(
    candidates: Iterable[Candidate],
    present: set[tuple[str, str]],
    suspects: Mapping[str, int],
    rebuilds: Mapping[str, int],
    now_ms: int,
) -> tuple[list[Repair], dict[str, int]]:
    """Which candidates to repair, and the suspects to remember for the next round.

    ``present``: (track, asset_id) of every message found now.  ``suspects``: key -> when a previous
    round first found it missing.  ``rebuilds``: key -> times already rebuilt.  A candidate found
    missing for the first time only becomes a suspect; missing again, it is repaired.
    """
    repairs: list[Repair] = []
    next_suspects: dict[str, int] = {}
    for candidate in candidates:
        if (candidate.track, candidate.asset_id) in present:
            continue
        first_missing = suspects.get(candidate.key)
        if first_missing is None:
            next_suspects[candidate.key] = now_ms
            continue
        if rebuilds.get(candidate.key, 0) >= MAX_REBUILDS:
            repairs.append(Repair(candidate, "failed", f"its message was lost {MAX_REBUILDS} times"))
        elif rebuild_kwargs(candidate) is None:
            repairs.append(
                Repair(candidate, "failed", "its message was lost and the record cannot rebuild it")
            )
        else:
            repairs.append(Repair(candidate, "requeued", "no message anywhere: rebuilt from the record"))
    return repairs, next_suspects


def rebuild_message(candidate: Candidate, rebuilds: int) -> Message:
    """The lost message, in the record's own generation when it has one (it carries on where it stopped)."""
    kwargs = rebuild_kwargs(candidate)
    assert kwargs is not None
    actor_name, queue = ACTORS[candidate.track]
    now = int(time.time() * 1000)
    gen_ts, gen_id = candidate.generation
    if not gen_id or candidate.status == TRACKS[candidate.track].initial:
        gen_ts, gen_id = now, str(uuid.uuid4())  # never started: a generation of its own
    return Message(
        queue_name=queue,
        actor_name=actor_name,
        args=(),
        kwargs=kwargs,
        message_id=gen_id,
        message_timestamp=gen_ts,
        options={"generation": gen_ts, "budget_started_at": now, "reconciled": rebuilds + 1},
    )


def load_candidates(track: Track, grace_s: float, limit: int = CANDIDATE_LIMIT) -> list[Candidate]:
    """The records of ``track`` under way whose lease expired ``grace_s`` ago, oldest first (an index range)."""
    cutoff = utcnow() - timedelta(seconds=grace_s)
    with session():
        rows = (
            Asset.select()
            .where(track.col("lease_at") < cutoff, track.col("status").in_(track.active))
            .order_by(track.col("lease_at"))
            .limit(limit)
        )
        return [
            Candidate(
                track=track.name,
                asset_id=row.asset_id,
                status=getattr(row, f"{track.prefix}status"),
                generation=(
                    int(getattr(row, f"{track.prefix}gen_ts") or 0),
                    str(getattr(row, f"{track.prefix}gen_id") or ""),
                ),
                source=row.source,
                filename=row.filename,
                content_type=row.content_type,
                crm_lead_id=row.crm_lead_id,
                workspace=row.workspace,
                asset_status=row.status,
            )
            for row in rows
        ]


class Reconciler:
    """One round of reconciliation against a broker (see the module docstring).

    Parameters:
      broker: a :class:`brokers.settle.ReliableBroker` (``backlog`` counts a queue's messages; ``tracked_messages``
        lists them, where it can).
      client: Redis client for the round-to-round state (suspects, rebuild counts).
      grace_s(float): RECONCILE_GRACE_SECONDS.
      interval_s(float): RECONCILE_INTERVAL_SECONDS (the state expires after a few rounds without one).
    """

    def __init__(
        self,
        broker: Any,
        client: Any,
        *,
        grace_s: float,
        interval_s: float,
        namespace: str = "dramatiq",
        chunk_retention_days: float | None = None,
        event_retention_days: float | None = None,
        outbox_retention_days: float | None = None,
    ) -> None:
        self.broker = broker
        self.client = client
        self.grace_s = grace_s
        self.interval_s = interval_s
        self.chunk_retention_days = chunk_retention_days
        self.event_retention_days = event_retention_days
        self.outbox_retention_days = outbox_retention_days
        self.purged_at = float("-inf")  # the first round purges
        self.suspects_key = f"{namespace}:__reconcile_suspects__"
        self.rebuilds_key = f"{namespace}:__reconcile_rebuilds__"

    def present(self, queue: str) -> set[tuple[str, str]] | None:
        """(track, asset id) of every tracked message in ``queue``; None when the broker cannot list it."""
        tracked = {
            name: actor.options.get("status_track")
            for name, actor in self.broker.actors.items()
            if actor.options.get("status_track")
        }
        messages = self.broker.tracked_messages([queue])
        if messages is None:
            return None
        found: set[tuple[str, str]] = set()
        for data in messages:
            track = tracked.get(data.get("actor_name"))
            kwargs = data.get("kwargs")
            if track and isinstance(kwargs, dict) and isinstance(kwargs.get("asset_id"), str):
                found.add((track, kwargs["asset_id"]))
        return found

    def purge_expired(self, every_s: float = 3600.0) -> dict[str, int]:
        """At most hourly: forget what is kept only for a while (LLM chunk results after KNOWLEDGE_CACHE_DAYS,
        Kommo webhook events after CRM_EVENTS_RETENTION_DAYS)."""
        if time.monotonic() - self.purged_at < every_s:
            return {}
        from worker_service.database.retention import Retention, purge_expired

        purged = purge_expired(
            Retention(
                chunk_days=self.chunk_retention_days,
                crm_event_days=self.event_retention_days,
                outbox_days=self.outbox_retention_days,
            )
        )
        self.purged_at = time.monotonic()
        if any(purged.values()):
            logger.info(
                "Purged expired rows: %s.",
                ", ".join(f"{n} {t}" for t, n in purged.items()),
                extra={"purged": purged},
            )
        return purged

    def run_once(self) -> list[Repair]:
        """One round over every track."""
        self.purge_expired()
        repairs: list[Repair] = []
        for track in TRACKS.values():
            repairs += self.reconcile(track)
        return repairs

    def reconcile(self, track: Track) -> list[Repair]:
        suspects_key = f"{self.suspects_key}.{track.name}"
        queue = ACTORS[track.name][1]
        # What the broker itself dead-lettered first (RabbitMQ's delivery limit: a crash loop): its record ends
        # failed/crash_loop now, instead of looking lost and being sent again with a fresh delivery count, which
        # let a poison message loop forever when every consumer of its queue was down (issue 44)
        self.broker.drain_dead_lettered([queue])
        candidates = load_candidates(track, self.grace_s)
        if not candidates:
            self.client.delete(suspects_key)
            return []
        backlog = self.broker.backlog(queue)
        present: set[tuple[str, str]] | None = set()
        if backlog > SCAN_LIMIT:
            present = None
        elif backlog:
            present = self.present(queue)
        if present is None:
            logger.info(
                "%d %s record(s) past their lease; %s holds %d message(s) that may include theirs: "
                "looked at again next round.",
                len(candidates),
                track.name,
                queue,
                backlog,
            )
            return []
        suspects = {k.decode(): int(v) for k, v in self.client.hgetall(suspects_key).items()}
        rebuilds = {k.decode(): int(v) for k, v in self.client.hgetall(self.rebuilds_key).items()}
        repairs, next_suspects = decide(candidates, present, suspects, rebuilds, int(time.time() * 1000))
        pipe = self.client.pipeline()
        pipe.delete(suspects_key)
        if next_suspects:
            pipe.hset(suspects_key, mapping=next_suspects)
            pipe.pexpire(suspects_key, int(self.interval_s * 3000))
        pipe.execute()
        for repair in repairs:
            self.apply(repair, rebuilds.get(repair.candidate.key, 0))
        return repairs

    def apply(self, repair: Repair, rebuilds: int) -> None:
        from worker_service.observability.metrics import RECONCILED

        candidate = repair.candidate
        track = TRACKS[candidate.track]
        if repair.action == "requeued":
            message = rebuild_message(candidate, rebuilds)
            self.broker.enqueue(message)
            self.client.hincrby(self.rebuilds_key, candidate.key, 1)
            self.client.expire(self.rebuilds_key, 7 * 86_400)
            with session(transaction=True):
                # A new lease: not picked again before its grace passes, unless the rebuilt message is lost too.
                (
                    Asset.update({track.col("lease_at"): utcnow()})
                    .where(Asset.asset_id == candidate.asset_id, track.col("status").in_(track.active))
                    .execute()
                )
                self._audit(repair, message.message_id)
        else:
            with session(transaction=True):
                if not mark_lost(
                    track,
                    candidate.asset_id,
                    candidate.generation,
                    repair.reason,
                    utcnow() - timedelta(seconds=self.grace_s),
                ):
                    return  # it moved meanwhile: nothing to repair
                self._audit(repair, None)
        RECONCILED.labels(candidate.track, repair.action).inc()
        logger.warning(
            "Reconciled %s record of asset %s (%s, %s): %s.",
            candidate.track,
            candidate.asset_id,
            candidate.status,
            repair.action,
            repair.reason,
            extra={"asset_id": candidate.asset_id, "track": candidate.track, "action": repair.action},
        )

    @staticmethod
    def _audit(repair: Repair, message_id: str | None) -> None:
        candidate = repair.candidate
        AuditEntry.create(
            who="reconciler",
            action=f"reconcile-{repair.action}",
            target=candidate.asset_id,
            count=1,
            detail={
                "track": candidate.track,
                "status": candidate.status,
                "reason": repair.reason,
                "message_id": message_id,
            },
        )
