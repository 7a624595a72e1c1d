"""Retention of what the fleet keeps only for a while (run by the reconciler's lease holder)."""

from __future__ import annotations

from datetime import timedelta

from database.connection import session
from database.models import LlmChunk, utcnow


def purge_chunks(older_than_days: float) -> int:
    """Forget LLM chunk results older than KNOWLEDGE_CACHE_DAYS; returns how many went."""
    with session(transaction=True):
        return int(LlmChunk.delete().where(LlmChunk.created_at < utcnow() - timedelta(days=older_than_days))
                   .execute())
