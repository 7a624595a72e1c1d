"""Retention of what the fleet keeps only for a while (run by the reconciler's lease holder)."""

from __future__ import annotations

from datetime import timedelta

from worker_service.database.connection import session
from worker_service.database.models import CrmEvent, LlmChunk, utcnow


def purge_chunks(older_than_days: float) -> int:
    """Forget LLM chunk results older than KNOWLEDGE_CACHE_DAYS; returns how many went."""
    with session(transaction=True):
        return int(LlmChunk.delete().where(LlmChunk.created_at < utcnow() - timedelta(days=older_than_days))
                   .execute())


def purge_crm_events(older_than_days: float) -> int:
    """Forget Kommo webhook events received more than CRM_EVENTS_RETENTION_DAYS ago; returns how many went."""
    with session(transaction=True):
        return int(CrmEvent.delete().where(CrmEvent.received_at < utcnow() - timedelta(days=older_than_days))
                   .execute())
