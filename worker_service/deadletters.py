"""Dead letters for operators (CLI and dashboard): list, show, requeue, delete, purge, each audited.

The rows are written by the dead-letter sink (middleware.deadletters) when a
message fails for good; this module reads and acts on them.  Requeue is
atomic: the state change and the enqueue happen in one database transaction
(the enqueue inside it), and the state change is conditional, so two
operators requeueing the same dead letter produce one message.  A requeued
message keeps its message_id, gets a fresh retry budget and starts a new
status generation.  Payloads are shown with secrets masked.
"""

from __future__ import annotations

import builtins
import json
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import dramatiq
import peewee
from dramatiq.message import Message

from worker_service.database import AuditEntry, DeadLetter, DeadLetterTally, session, utcnow
from worker_service.database.models import iso
from worker_service.masking import mask
from worker_service.outcome import PENDING_DEAD_LETTER

logger = logging.getLogger(__name__)

#: dead letters requeued per transaction by ``requeue_matching``
REQUEUE_BATCH = 500
#: the columns the dead-letter tally counts by (migration 12): filters on them are counted exactly
TALLY_COLUMNS = ("actor", "queue", "error_type", "state")
ERROR_TYPES = (
    "invalid_payload",
    "unknown_actor",
    "undecodable",
    "retries_exhausted",
    "permanent_error",
    "timeout",
    "memory",
    "age_limit",
    "crash_loop",
    "forbidden",
)
#: the dead-letter types of a message the service judged hopeless as it was (a PermanentError, a payload or body it
#: could not take, an actor it does not have, a forbidden webhook): a requeue meets the same verdict unless the
#: source changed first.  Read from the type the failure got, never from a second list of domain codes.
PERMANENT_TYPES = frozenset(
    {"permanent_error", "invalid_payload", "undecodable", "unknown_actor", "forbidden"}
)
#: options that belong to one delivery or one generation and must not survive a requeue
_RESET_OPTIONS = (
    "retries",
    "infra_retries",
    "budget_started_at",
    "attempt_history",
    "last_error",
    "hard_timeouts",
    "deferrals",
    "last_deferral",
    PENDING_DEAD_LETTER,
    "eta",
    "redis_message_id",
    "traceback",
    "requeue_timestamp",
)


#: what a list row reads (never the payload, traceback or history: 50 forged 5 MB webhooks on one page took the
#: dashboard to 340 MiB), with the final error cut to ERROR_PREVIEW_CHARS; ``get`` reads the whole row
SUMMARY_COLUMNS = (
    DeadLetter.id,
    DeadLetter.message_id,
    DeadLetter.queue,
    DeadLetter.actor,
    DeadLetter.error_type,
    DeadLetter.error_code,
    DeadLetter.asset_id,
    DeadLetter.exception_type,
    DeadLetter.attempts,
    DeadLetter.first_enqueued_at,
    DeadLetter.failed_at,
    DeadLetter.state,
    DeadLetter.state_changed_at,
    DeadLetter.state_changed_by,
)
ERROR_PREVIEW_CHARS = 1_000
_error_preview = peewee.fn.SUBSTR(DeadLetter.error_message, 1, ERROR_PREVIEW_CHARS).alias("error_message")


def ms_to_dt(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, UTC).replace(tzinfo=None) if ms else None


def to_public(row: DeadLetter, *, full: bool = False) -> dict[str, Any]:
    """A dead letter as people see it (CLI, pages, API): secrets masked by the one rule (worker_service.masking);
    the stored row keeps the original for requeue."""
    out: dict[str, Any] = {
        "id": row.id,
        "message_id": row.message_id,
        "queue": row.queue,
        "actor": row.actor,
        "asset_id": row.asset_id,
        "error_type": row.error_type,
        # older rows (before migration 14) have no domain code: their type stands in
        "error_code": row.error_code or row.error_type,
        "permanent": row.error_type in PERMANENT_TYPES,
        "exception_type": row.exception_type,
        "error_message": mask(row.error_message),
        "attempts": row.attempts,
        "first_enqueued_at": iso(row.first_enqueued_at),
        "failed_at": iso(row.failed_at),
        "state": row.state,
        "state_changed_at": iso(row.state_changed_at),
        "state_changed_by": row.state_changed_by,
    }
    if full:
        out.update(
            {
                "args": mask(row.args),
                "kwargs": mask(row.kwargs),
                "options": mask(row.options),
                "raw_body": mask(row.raw_body),
                "traceback": mask(row.traceback),
                "history": mask(row.history),
            }
        )
    return out


@dataclass(frozen=True)
class Filter:
    """Which dead letters: ``error_type`` is a type (ERROR_TYPES) or a domain code (``corrupt``, matched against
    ``error_code``); ``asset_id`` those naming one asset."""

    actor: str | None = None
    queue: str | None = None
    error_type: str | None = None
    state: str | None = "dead"
    since: datetime | None = None
    until: datetime | None = None
    asset_id: str | None = None

    @property
    def by_code(self) -> bool:
        return bool(self.error_type) and self.error_type not in ERROR_TYPES

    @property
    def tallied(self) -> bool:
        """Counted exactly from the tally (no time range, asset or domain code: the tally has none of those)."""
        return self.since is None and self.until is None and self.asset_id is None and not self.by_code

    def where(self) -> peewee.Expression:
        expr = DeadLetter.id > 0
        if self.actor:
            expr &= DeadLetter.actor == self.actor
        if self.queue:
            expr &= DeadLetter.queue == self.queue
        if self.by_code:
            expr &= DeadLetter.error_code == self.error_type
        elif self.error_type:
            expr &= DeadLetter.error_type == self.error_type
        if self.asset_id:
            expr &= DeadLetter.asset_id == self.asset_id
        if self.state:
            expr &= DeadLetter.state == self.state
        if self.since:
            expr &= DeadLetter.failed_at >= self.since
        if self.until:
            expr &= DeadLetter.failed_at < self.until
        return expr


def _tally_where(flt: Filter) -> peewee.Expression:
    """``flt`` (without its time range) on the tally's columns."""
    expr = DeadLetterTally.n != 0
    for column in TALLY_COLUMNS:
        value = getattr(flt, column)
        if value:
            expr &= getattr(DeadLetterTally, column) == value
    return expr


class DeadLetterStore:
    """Operator actions on dead letters (CLI and dashboard).

    Parameters:
      broker: the broker requeued messages go to.
    """

    def __init__(self, broker: dramatiq.Broker) -> None:
        self.broker = broker

    # --- reading ---------------------------------------------------------------
    def list(
        self, flt: Filter, *, limit: int = 100, offset: int = 0, before: int | None = None, full: bool = False
    ) -> builtins.list[DeadLetter]:
        """Newest first, the summary columns only unless ``full`` (SUMMARY_COLUMNS).  ``before``: only ids below
        it (keyset paging: each page costs the same however deep; ``offset`` is kept for old links and API
        callers, and costs what it skips)."""
        where = flt.where() if before is None else flt.where() & (DeadLetter.id < before)
        columns = () if full else (*SUMMARY_COLUMNS, _error_preview)
        with session():
            return list(
                DeadLetter.select(*columns)
                .where(where)
                .order_by(DeadLetter.id.desc())
                .limit(limit)
                .offset(offset)
            )

    def count(self, flt: Filter, *, cap: int | None = None) -> int:
        """How many match: exact from the tally (migration 12) unless the filter has a time range; then counting
        stops past ``cap`` when given (returns ``cap + 1``: "more than cap")."""
        if flt.tallied:
            with session():
                return int(
                    DeadLetterTally.select(peewee.fn.COALESCE(peewee.fn.SUM(DeadLetterTally.n), 0))
                    .where(_tally_where(flt))
                    .scalar()
                )
        query = DeadLetter.select(DeadLetter.id).where(flt.where())
        with session():
            return query.count() if cap is None else query.limit(cap + 1).count()

    def counts_by(self, column: str, flt: Filter, *, cap: int | None = None) -> dict[str, int]:
        """Per value of ``column``, how many match ``flt`` (values with none left out); exact from the tally
        without a time range, else each count stops past ``cap`` when given."""
        if column not in TALLY_COLUMNS:
            raise ValueError(f"not a column of the dead-letter tally: {column}")
        if flt.tallied:
            field = getattr(DeadLetterTally, column)
            with session():
                rows = (
                    DeadLetterTally.select(field, peewee.fn.SUM(DeadLetterTally.n))
                    .where(_tally_where(flt))
                    .group_by(field)
                    .order_by(field)
                    .tuples()
                )
                return {str(value): int(n) for value, n in rows if n}
        values = [getattr(flt, column)] if getattr(flt, column, None) else self.distinct(column)
        counts = {value: self.count(Filter(**{**flt.__dict__, column: value}), cap=cap) for value in values}
        return {value: n for value, n in counts.items() if n}

    def distinct(self, column: str) -> builtins.list[str]:
        """The values ``column`` takes among the dead letters, in order (read from the tally)."""
        if column not in TALLY_COLUMNS:
            raise ValueError(f"not a column of the dead-letter tally: {column}")
        field = getattr(DeadLetterTally, column)
        with session():
            return [
                str(value)
                for (value,) in DeadLetterTally.select(field)
                .where(DeadLetterTally.n > 0)
                .distinct()
                .order_by(field)
                .tuples()
            ]

    def recent_codes(self, *, sample: int = 1000) -> dict[str, int]:
        """The domain codes among the newest ``sample`` dead letters, with how many each (what a filter that
        matched nothing can point to; one index range, whatever the table's size)."""
        newest = (
            DeadLetter.select(DeadLetter.error_code, DeadLetter.error_type)
            .where(DeadLetter.state == "dead")
            .order_by(DeadLetter.id.desc())
            .limit(sample)
        )
        counts: dict[str, int] = {}
        with session():
            for code, error_type in newest.tuples():
                counts[code or error_type] = counts.get(code or error_type, 0) + 1
        return dict(sorted(counts.items(), key=lambda item: (-item[1], item[0])))

    def get(self, dead_letter_id: int) -> DeadLetter | None:
        with session():
            return DeadLetter.get_or_none(DeadLetter.id == dead_letter_id)

    def audit(self, *, limit: int = 200) -> builtins.list[dict[str, Any]]:
        """The newest ``limit`` operator actions, newest first, as the CLI, the page and the API show them."""
        with session():
            return [
                {
                    "at": iso(a.at),
                    "who": a.who,
                    "action": a.action,
                    "target": a.target,
                    "count": a.count,
                    "detail": a.detail,
                }
                for a in AuditEntry.select().order_by(AuditEntry.id.desc()).limit(limit)
            ]

    # --- actions -----------------------------------------------------------------
    def requeue(self, ids: Iterable[int], who: str) -> builtins.list[int]:
        """Requeue dead letters by id; returns the ids actually requeued (each at most once)."""
        requested = [int(i) for i in ids]
        done = [i for i in requested if self._requeue_one(i, who)]
        self._audit(
            who, "requeue", f"ids={','.join(map(str, requested))}", len(done), {"requested": requested}
        )
        return done

    def requeue_matching(
        self,
        flt: Filter,
        who: str,
        *,
        limit: int | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> builtins.list[int]:
        """Requeue every dead letter matching ``flt`` (at most ``limit``), newest first, in batches of
        REQUEUE_BATCH (one transaction each, the batch's rows read and marked in two statements);
        ``progress(done so far)`` after each batch."""
        flt = Filter(**{**flt.__dict__, "state": "dead"})
        done: builtins.list[int] = []
        before: int | None = None
        while limit is None or len(done) < limit:
            size = REQUEUE_BATCH if limit is None else min(REQUEUE_BATCH, limit - len(done))
            batch = self.list(flt, limit=size, before=before, full=True)
            if not batch:
                break
            before = batch[-1].id
            done += self._requeue_batch(batch, who)
            if progress is not None:
                progress(len(done))
        self._audit(who, "requeue", _describe(flt), len(done), {"filter": _filter_json(flt)})
        return done

    def _requeue_batch(self, rows: builtins.list[DeadLetter], who: str) -> builtins.list[int]:
        """Mark the rows requeued and enqueue their messages, in one transaction: an enqueue that fails rolls
        the states back (a message enqueued before the failure may then run twice, never not at all)."""
        ids = [row.id for row in rows if row.actor]
        with session(transaction=True):
            # conditional, like one requeue: a row another operator requeued meanwhile is not requeued twice
            changed = {
                row_id
                for (row_id,) in DeadLetter.update(
                    state="requeued", state_changed_at=utcnow(), state_changed_by=who
                )
                .where(DeadLetter.id.in_(ids), DeadLetter.state == "dead")
                .returning(DeadLetter.id)
                .tuples()
            }
            for row in rows:
                if row.id in changed:
                    self.broker.enqueue(requeue_message(row))
        if changed:
            logger.info("Requeued %d dead letter(s) by %s", len(changed), who)
        return [row.id for row in rows if row.id in changed]

    def delete(self, ids: Sequence[int], who: str) -> int:
        with session(transaction=True):
            n = (
                DeadLetter.update(state="deleted", state_changed_at=utcnow(), state_changed_by=who)
                .where(DeadLetter.id.in_(list(ids)), DeadLetter.state == "dead")
                .execute()
            )
            self._audit(who, "delete", f"ids={','.join(map(str, ids))}", n, None)
        return n

    def delete_matching(self, flt: Filter, who: str) -> int:
        flt = Filter(**{**flt.__dict__, "state": "dead"})
        with session(transaction=True):
            n = (
                DeadLetter.update(state="deleted", state_changed_at=utcnow(), state_changed_by=who)
                .where(flt.where())
                .execute()
            )
            self._audit(who, "delete", _describe(flt), n, {"filter": _filter_json(flt)})
        return n

    def purge(self, older_than_days: float, who: str) -> tuple[int, int]:
        """Remove dead letters and audit entries older than the retention; returns (letters, audit rows)."""
        cutoff = utcnow() - timedelta(days=older_than_days)
        with session(transaction=True):
            letters = DeadLetter.delete().where(DeadLetter.failed_at < cutoff).execute()
            audits = AuditEntry.delete().where(AuditEntry.at < cutoff).execute()
            self._audit(
                who,
                "purge",
                f"older_than_days={older_than_days}",
                letters + audits,
                {"dead_letters": letters, "audit_entries": audits},
            )
        return letters, audits

    def _requeue_one(self, dead_letter_id: int, who: str) -> bool:
        with session(transaction=True):
            changed = (
                DeadLetter.update(state="requeued", state_changed_at=utcnow(), state_changed_by=who)
                .where(DeadLetter.id == dead_letter_id, DeadLetter.state == "dead", DeadLetter.actor != "")
                .execute()
            )
            if not changed:
                return False
            row = DeadLetter.get_by_id(dead_letter_id)
            # Enqueued inside the transaction: if the enqueue fails, the state change rolls back.
            self.broker.enqueue(requeue_message(row))
        logger.info("Requeued dead letter %d (message %s) by %s", dead_letter_id, row.message_id, who)
        return True

    def _audit(self, who: str, action: str, target: str, count: int, detail: dict | None) -> None:
        with session(transaction=True):
            AuditEntry.create(who=who, action=action, target=target, count=count, detail=detail)


def requeue_message(row: DeadLetter) -> Message:
    options = {k: v for k, v in (row.options or {}).items() if k not in _RESET_OPTIONS}
    now = int(time.time() * 1000)
    options.update({"generation": now, "budget_started_at": now, "requeued_from": row.id})
    return Message(
        queue_name=row.queue,
        actor_name=row.actor,
        args=tuple(row.args or ()),
        kwargs=row.kwargs or {},
        options=options,
        message_id=row.message_id,
        message_timestamp=int(row.first_enqueued_at.replace(tzinfo=UTC).timestamp() * 1000)
        if row.first_enqueued_at
        else now,
    )


def _filter_json(flt: Filter) -> dict[str, Any]:
    return {k: (iso(v) if isinstance(v, datetime) else v) for k, v in flt.__dict__.items() if v is not None}


def _describe(flt: Filter) -> str:
    return json.dumps(_filter_json(flt), sort_keys=True)
