"""Read models shared by the CLI and the web API (no writes here)."""

from __future__ import annotations

from typing import Any

from worker_service.database.connection import session
from worker_service.database.models import (
    Asset,
    AssetText,
    CrmLink,
    DeadLetter,
    LlmUsage,
    StatusChange,
    iso,
)
from worker_service.masking import mask


def asset_record(asset_id: str) -> dict[str, Any] | None:
    with session():
        asset = Asset.get_or_none(Asset.asset_id == asset_id)
    return None if asset is None else asset.to_public()


def asset_text(asset_id: str) -> dict[str, Any] | None:
    with session():
        row = AssetText.get_or_none(AssetText.asset == asset_id)
    return None if row is None else {"asset_id": asset_id, "sha256": row.sha256, "text": row.text}


def asset_usage(asset_id: str) -> dict[str, Any] | None:
    """What the LLM calls of the asset's knowledge cost (its current generation), or None."""
    with session():
        usage = LlmUsage.get_or_none(LlmUsage.asset == asset_id)
    return (
        None
        if usage is None
        else {
            "model": usage.model,
            "requests": usage.requests,
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "cost_usd": usage.cost_usd,
        }
    )


def asset_history(asset_id: str, limit: int = 1000) -> list[dict[str, Any]] | None:
    """Every transition of the asset's text and knowledge, oldest first; None for an unknown asset."""
    with session():
        if not Asset.select().where(Asset.asset_id == asset_id).exists():
            return None
        return [
            row.to_public()
            for row in StatusChange.select()
            .where(StatusChange.asset_id == asset_id)
            .order_by(StatusChange.id)
            .limit(limit)
        ]


def asset_dead_letters(asset_id: str, limit: int = 50) -> list[dict[str, Any]]:
    """The dead letters of the asset's messages (process_asset, extract_knowledge), newest first."""
    with session():
        rows = (
            DeadLetter.select(
                DeadLetter.id,
                DeadLetter.actor,
                DeadLetter.error_type,
                DeadLetter.error_code,
                DeadLetter.error_message,
                DeadLetter.state,
                DeadLetter.failed_at,
            )
            .where(DeadLetter.asset_id == asset_id)
            .order_by(DeadLetter.id.desc())
            .limit(limit)
        )
        return [
            {
                "id": r.id,
                "actor": r.actor,
                "error_type": r.error_type,
                "error_code": r.error_code or r.error_type,
                "error_message": mask(r.error_message),
                "state": r.state,
                "failed_at": iso(r.failed_at),
            }
            for r in rows
        ]


def lead_link(kommo_lead_id: int | None) -> dict[str, Any] | None:
    """The CRM ledger row of a Kommo lead (its last known status, from webhooks)."""
    if kommo_lead_id is None:
        return None
    with session():
        row = CrmLink.get_or_none(CrmLink.kind == "lead", CrmLink.kommo_id == kommo_lead_id)
    return (
        None
        if row is None
        else {
            "key": row.key,
            "kommo_id": row.kommo_id,
            "status_id": row.status_id,
            "pipeline_id": row.pipeline_id,
            "price": row.price,
        }
    )
