"""Deleting an asset for good (``DELETE /api/assets/ID``, ``worker asset delete ID``): a customer's erasure request.

In one transaction: the asset's contribution to its workspace graph (its mentions and relation mentions;
aliases and entities left with none go too, and what remains is resolved again: the graph equals the graph built
without the asset), its stored text, its LLM results in the chunk cache, its usage, history and record; a
tombstone, so that a message of that asset running or queued at the time ends without writing anything back
(database.tracks: a message of an older generation finds no record and creates none); an ``asset.deleted``
outcome event (after the asset's earlier events, in order); an audit entry naming who.

The product's own file under STORAGE_ROOT (a ``file:`` source) is not the service's to delete; a URL source
was only ever read into a temporary file, removed after each fetch.
"""

from __future__ import annotations

import logging
import time

from settings import Settings
from worker_service.database import (
    Asset,
    AssetText,
    AuditEntry,
    DeletedAsset,
    LlmChunk,
    LlmUsage,
    outbox,
    session,
)
from worker_service.database.models import StatusChange
from worker_service.knowledge.graph import chunk_key, chunk_spans
from worker_service.knowledge.graphstore import remove_contribution

logger = logging.getLogger(__name__)


def delete_asset(asset_id: str, who: str, settings: Settings) -> bool:
    """Delete ``asset_id`` (see the module docstring); False when there is no such asset."""
    with session(transaction=True):
        asset = Asset.get_or_none(Asset.asset_id == asset_id)
        if asset is None:
            return False
        workspace = asset.workspace
        text = AssetText.get_or_none(AssetText.asset == asset_id)
        usage = LlmUsage.get_or_none(LlmUsage.asset == asset_id)
        cached = 0
        if text is not None:  # what the model said about this text is the document's too
            model = usage.model if usage is not None and usage.model else settings.openrouter_model
            keys = sorted(
                {
                    chunk_key(model, text.text[start:end].strip())
                    for start, end in chunk_spans(
                        text.text, settings.knowledge_chunk_chars, settings.knowledge_chunk_overlap
                    )
                }
            )
            for start in range(0, len(keys), 400):
                cached += LlmChunk.delete().where(LlmChunk.key.in_(keys[start : start + 400])).execute()
        remove_contribution(asset_id)
        AssetText.delete().where(AssetText.asset == asset_id).execute()
        LlmUsage.delete().where(LlmUsage.asset == asset_id).execute()
        StatusChange.delete().where(StatusChange.asset_id == asset_id).execute()
        Asset.delete().where(Asset.asset_id == asset_id).execute()
        now_ms = int(time.time() * 1000)
        (
            DeletedAsset.insert(asset_id=asset_id, deleted_at_ms=now_ms, deleted_by=who[:200])
            .on_conflict(
                conflict_target=[DeletedAsset.asset_id],
                update={DeletedAsset.deleted_at_ms: now_ms, DeletedAsset.deleted_by: who[:200]},
            )
            .execute()
        )
        outbox.record("asset", asset_id, "deleted", None)
        AuditEntry.create(
            who=who,
            action="asset-delete",
            target=asset_id,
            count=1,
            detail={"workspace": workspace, "cached_chunks_deleted": cached},
        )
    logger.info(
        "Asset %s deleted by %s (workspace %s; %d cached chunk result(s) deleted)",
        asset_id,
        who,
        workspace,
        cached,
    )
    return True
