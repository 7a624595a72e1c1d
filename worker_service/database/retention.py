"""Retention of what the fleet keeps only for a while: every purge by age lives here.

``purge_expired`` runs at most hourly in the reconciler's lease holder; ``worker crm purge`` calls one purge
directly. (Dead letters and the audit log are purged only by an operator, audited: ``DeadLetterStore.purge``.)
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from worker_service.database.connection import session
from worker_service.database.models import CrmEvent, LlmChunk, OutboxEvent, utcnow


def purge_chunks(older_than_days: float) -> int:
    """Forget LLM chunk results older than KNOWLEDGE_CACHE_DAYS; returns how many went."""
    with session(transaction=True):
        return int(
            LlmChunk.delete()
            .where(LlmChunk.created_at < utcnow() - timedelta(days=older_than_days))
            .execute()
        )


def purge_crm_events(older_than_days: float) -> int:
    """Forget Kommo webhook events received more than CRM_EVENTS_RETENTION_DAYS ago; returns how many went."""
    with session(transaction=True):
        return int(
            CrmEvent.delete()
            .where(CrmEvent.received_at < utcnow() - timedelta(days=older_than_days))
            .execute()
        )


def purge_delivered_events(older_than_days: float) -> int:
    """Forget delivered outcome events older than EVENTS_RETENTION_DAYS; returns how many went."""
    with session(transaction=True):
        return int(
            OutboxEvent.delete()
            .where(
                OutboxEvent.state == "delivered",
                OutboxEvent.occurred_at < utcnow() - timedelta(days=older_than_days),
            )
            .execute()
        )


@dataclass(frozen=True)
class Retention:
    """How long each kind of row is kept (None: forever). Parameters: chunk_days (KNOWLEDGE_CACHE_DAYS),
    crm_event_days (CRM_EVENTS_RETENTION_DAYS), outbox_days (EVENTS_RETENTION_DAYS, delivered events only)."""

    chunk_days: float | None = None
    crm_event_days: float | None = None
    outbox_days: float | None = None


def purge_expired(retention: Retention) -> dict[str, int]:
    """Every purge by age that ``retention`` asks for; returns rows removed per table."""
    purged = {}
    if retention.chunk_days is not None:
        purged["llm_chunk"] = purge_chunks(retention.chunk_days)
    if retention.crm_event_days is not None:
        purged["crm_event"] = purge_crm_events(retention.crm_event_days)
    if retention.outbox_days is not None:
        purged["outbox_event"] = purge_delivered_events(retention.outbox_days)
    return purged
