"""Reading an asset's text and replacing its graph atomically."""

from __future__ import annotations

from actors.knowledge.graph import Graph
from actors.knowledge.openrouter import Usage
from database import Asset, AssetText, KnowledgeEntity, KnowledgeRelation, LlmUsage, session, utcnow
from errors import PermanentError, TransientError


def load_asset(asset_id: str) -> tuple[Asset, str]:
    with session():
        asset = Asset.get_or_none(Asset.asset_id == asset_id)
        if asset is None:
            raise PermanentError(f"unknown asset {asset_id}", error_code="unknown_asset")
        text = AssetText.get_or_none(AssetText.asset == asset_id)
        if text is None:
            if asset.status in ("received", "processing", "retrying"):
                raise TransientError(f"asset {asset_id} has no text yet ({asset.status})", error_code="not_ready")
            raise PermanentError(f"asset {asset_id} has no extracted text ({asset.status})",
                                 error_code="not_extracted")
        return asset, text.text


def replace_graph(asset_id: str, generation: tuple[int, str], graph: Graph, usage: Usage, model: str) -> bool:
    """Replace the asset's entities, relations and usage in one transaction; False if superseded."""
    gen_ts, gen_id = generation
    with session(transaction=True):
        owned = (Asset.select().where(Asset.asset_id == asset_id, Asset.knowledge_gen_ts == gen_ts,
                                      Asset.knowledge_gen_id == gen_id).exists())
        if not owned:
            return False
        KnowledgeRelation.delete().where(KnowledgeRelation.asset == asset_id).execute()
        KnowledgeEntity.delete().where(KnowledgeEntity.asset == asset_id).execute()
        names = {key: entity.name for key, entity in graph.entities.items()}
        rows = [{"asset": asset_id, "key": key, "name": e.name, "type": e.type, "descriptions": e.descriptions,
                 "mentions": e.mentions} for key, e in graph.entities.items()]
        for start in range(0, len(rows), 200):
            KnowledgeEntity.insert_many(rows[start:start + 200]).execute()
        rels = [{"asset": asset_id, "source": names[r.source], "target": names[r.target], "type": r.type,
                 "descriptions": r.descriptions, "weight": r.weight} for r in graph.relations.values()]
        for start in range(0, len(rels), 200):
            KnowledgeRelation.insert_many(rels[start:start + 200]).execute()
        (LlmUsage.insert(asset=asset_id, model=model, requests=usage.requests, prompt_tokens=usage.prompt_tokens,
                         completion_tokens=usage.completion_tokens, cost_usd=usage.cost_usd, updated_at=utcnow())
         .on_conflict(conflict_target=[LlmUsage.asset],
                      update={LlmUsage.model: model, LlmUsage.requests: usage.requests,
                              LlmUsage.prompt_tokens: usage.prompt_tokens,
                              LlmUsage.completion_tokens: usage.completion_tokens,
                              LlmUsage.cost_usd: usage.cost_usd, LlmUsage.updated_at: utcnow()})
         .execute())
    return True
