"""Storing extraction results: text apart from the status row, replaced atomically."""

from __future__ import annotations

import logging
from typing import Any

from worker_service.database import Asset, AssetText, session, utcnow
from worker_service.knowledge.graphstore import remove_contribution

logger = logging.getLogger(__name__)


def unchanged(asset_id: str, sha256: str) -> Asset | None:
    """The asset if its stored text already comes from content with this sha256."""
    with session():
        asset = Asset.get_or_none(Asset.asset_id == asset_id)
        if asset is None or asset.sha256 != sha256:
            return None
        if not AssetText.select().where(AssetText.asset == asset_id, AssetText.sha256 == sha256).exists():
            return None
        return asset


def store_result(
    asset_id: str,
    generation: tuple[int, str],
    *,
    result: dict[str, Any],
    sha256: str,
    size: int,
    detected_type: str,
    seconds: float,
) -> bool:
    """Replace the asset's text and facts in one transaction; False if a newer generation owns the asset.

    New content invalidates the previous knowledge graph, so the knowledge
    state goes back to ``pending`` and the asset's contribution to its workspace
    graph is removed, in the same transaction: a re-upload whose knowledge then
    fails, is skipped or runs out of budget leaves nothing of the old content.
    """
    text = result["text"]
    gen_ts, gen_id = generation
    with session(transaction=True):
        no_text = bool(result.get("no_text"))
        changed = (
            Asset.update(
                pages=result.get("pages"),
                chars=len(text),
                size=size,
                sha256=sha256,
                detected_type=detected_type,
                no_text=no_text,
                ocr_pages=int(result.get("ocr_pages") or 0),
                ocr_languages=result.get("ocr_languages"),
                parts_skipped=int(result.get("parts_skipped") or 0),
                ocr_low_confidence_pages=",".join(map(str, result.get("ocr_low_confidence_pages") or []))
                or None,
                no_text_reason="ocr_unavailable" if no_text and result.get("ocr_unavailable") else None,
                extract_seconds=round(seconds, 4),
                updated_at=utcnow(),
                knowledge_status="pending",
                knowledge_error_code=None,
                knowledge_error_message=None,
                knowledge_entities=None,
                knowledge_relations=None,
                knowledge_lease_at=utcnow(),
            )
            .where(Asset.asset_id == asset_id, Asset.gen_ts == gen_ts, Asset.gen_id == gen_id)
            .execute()
        )
        if not changed:
            logger.info("Not storing results of %s: a newer generation owns the asset.", asset_id)
            return False
        remove_contribution(asset_id)
        (
            AssetText.insert(asset=asset_id, sha256=sha256, text=text, updated_at=utcnow())
            .on_conflict(
                conflict_target=[AssetText.asset],
                update={AssetText.sha256: sha256, AssetText.text: text, AssetText.updated_at: utcnow()},
            )
            .execute()
        )
    return True
