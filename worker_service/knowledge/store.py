"""Reading an asset's text, the chunk checkpoints (and cache), per-asset LLM spend, and storing its contribution to
the workspace graph."""

from __future__ import annotations

import peewee

from worker_service.database import (
    Asset,
    AssetText,
    LlmChunk,
    LlmUsage,
    session,
    utcnow,
)
from worker_service.errors import PermanentError, TransientError
from worker_service.knowledge.graph import PROMPT_VERSION, ChunkResult
from worker_service.knowledge.graphstore import replace_contribution
from worker_service.knowledge.mentions import NewMention, NewRelation
from worker_service.knowledge.openrouter import Usage


def extracted_asset(asset_id: str) -> Asset:
    """The asset once its record says ``extracted``.

    ``process_asset`` sends ``extract_knowledge`` before its own status is written (the status middleware
    writes it after the actor), so this message may arrive first: it waits (no attempt spent) rather than
    finish before the asset does, which would also put ``knowledge.*`` before ``asset.extracted`` in the
    asset's outcome events.
    """
    with session():
        asset = Asset.get_or_none(Asset.asset_id == asset_id)
    if asset is None:
        raise PermanentError(f"unknown asset {asset_id}", error_code="unknown_asset")
    if asset.status in ("received", "processing", "retrying"):
        raise TransientError(
            f"asset {asset_id} is not extracted yet ({asset.status})",
            error_code="not_ready",
            retry_after_ms=1_000,
            spends_attempt=False,
        )
    if asset.status != "extracted":
        raise PermanentError(
            f"asset {asset_id} has no extracted text ({asset.status})", error_code="not_extracted"
        )
    return asset


def load_asset(asset_id: str) -> tuple[Asset, str]:
    asset = extracted_asset(asset_id)
    with session():
        text = AssetText.get_or_none(AssetText.asset == asset_id)
    if text is None:
        raise PermanentError(f"asset {asset_id} has no extracted text", error_code="not_extracted")
    return asset, text.text


def stored_chunks(keys: set[str]) -> dict[str, ChunkResult]:
    """The results already stored for these chunk keys (by this asset earlier, or by any other)."""
    found: dict[str, ChunkResult] = {}
    ordered = sorted(keys)
    with session():
        for start in range(0, len(ordered), 500):
            for row in (
                LlmChunk.select(LlmChunk.key, LlmChunk.valid, LlmChunk.result)
                .where(LlmChunk.key.in_(ordered[start : start + 500]))
                .tuples()
            ):
                found[row[0]] = ChunkResult.from_stored(bool(row[1]), row[2])
    return found


def _add_usage(asset_id: str, generation: tuple[int, str], model: str, usage: Usage) -> None:
    """Add to the asset's usage row; a row of another generation starts again from this usage."""
    gen_ts, gen_id = generation
    same = (LlmUsage.gen_ts == gen_ts) & (LlmUsage.gen_id == gen_id)

    def added(column: peewee.Field, value: float) -> peewee.Node:
        return peewee.Case(None, [(same, column + value)], value)

    (
        LlmUsage.insert(
            asset=asset_id,
            gen_ts=gen_ts,
            gen_id=gen_id,
            model=model,
            requests=usage.requests,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            cost_usd=usage.cost_usd,
            updated_at=utcnow(),
        )
        .on_conflict(
            conflict_target=[LlmUsage.asset],
            update={
                LlmUsage.requests: added(LlmUsage.requests, usage.requests),
                LlmUsage.prompt_tokens: added(LlmUsage.prompt_tokens, usage.prompt_tokens),
                LlmUsage.completion_tokens: added(LlmUsage.completion_tokens, usage.completion_tokens),
                LlmUsage.cost_usd: added(LlmUsage.cost_usd, usage.cost_usd),
                LlmUsage.gen_ts: gen_ts,
                LlmUsage.gen_id: gen_id,
                LlmUsage.model: model,
                LlmUsage.updated_at: utcnow(),
            },
        )
        .execute()
    )


def store_chunk(
    asset_id: str, generation: tuple[int, str], key: str, model: str, result: ChunkResult, usage: Usage
) -> None:
    """Checkpoint one chunk as soon as its result arrives, with what it cost this asset, in one transaction."""
    with session(transaction=True):
        (
            LlmChunk.insert(
                key=key,
                model=model,
                prompt_version=PROMPT_VERSION,
                valid=result.valid,
                result=result.to_json(),
                requests=usage.requests,
                prompt_tokens=usage.prompt_tokens,
                completion_tokens=usage.completion_tokens,
                cost_usd=usage.cost_usd,
                created_at=utcnow(),
            )
            .on_conflict_ignore()
            .execute()
        )
        _add_usage(asset_id, generation, model, usage)


def spent_usd(asset_id: str, generation: tuple[int, str]) -> float:
    """What this generation of the asset's knowledge has paid so far (earlier, interrupted deliveries)."""
    with session():
        row = LlmUsage.get_or_none(LlmUsage.asset == asset_id)
    return float(row.cost_usd) if row is not None and (row.gen_ts, row.gen_id) == generation else 0.0


def store_contribution(
    asset_id: str,
    generation: tuple[int, str],
    mentions: list[NewMention],
    relations: list[NewRelation],
    model: str,
    *,
    chunks: int,
    failed_chunks: int,
) -> tuple[int, int] | None:
    """Make the asset's contribution to its workspace graph exactly these mentions and relations, in one
    transaction with the chunk counts; (entities, relations) of the asset, or None if superseded (a newer
    generation, or the asset was deleted meanwhile: nothing is written)."""
    gen_ts, gen_id = generation
    with session(transaction=True):
        owned = (
            Asset.update(knowledge_chunks=chunks, knowledge_chunks_failed=failed_chunks)
            .where(
                Asset.asset_id == asset_id, Asset.knowledge_gen_ts == gen_ts, Asset.knowledge_gen_id == gen_id
            )
            .execute()
        )
        if not owned:
            return None
        workspace = Asset.get(Asset.asset_id == asset_id).workspace
        counts = replace_contribution(asset_id, workspace, mentions, relations)
        Asset.update(knowledge_entities=counts[0], knowledge_relations=counts[1]).where(
            Asset.asset_id == asset_id
        ).execute()
        _add_usage(asset_id, generation, model, Usage())  # every chunk was cached: this generation paid 0
    return counts
