"""Assets domain: ``process_asset`` turns an uploaded document into stored text.

Actor ``process_asset`` (queue ``assets``), payload ``worker_contracts.ProcessAsset``.
Options: ``status_track="asset"`` (received -> processing <-> retrying -> extracted | failed),
attempt/time budgets and the soft time limit from the ASSETS_* settings. Extraction runs in a
hard-limited child (EXTRACT_TIMEOUT_SECONDS, EXTRACT_MEMORY_MB); the work itself is
``worker_service.assets.process``.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage

from settings import get_settings
from worker_service.assets.process import process_asset_source
from worker_service.database.tracks import generation_of

_settings = get_settings()


@dramatiq.actor(
    queue_name="assets",
    status_track="asset",
    max_attempts=_settings.assets_max_attempts,
    retry_hours=_settings.assets_retry_hours,
    time_limit=_settings.assets_time_limit_seconds * 1000,
)
def process_asset(
    asset_id: str,
    source: str,
    filename: str | None = None,
    content_type: str | None = None,
    crm_lead_id: int | None = None,
    workspace: str | None = None,
) -> None:
    # crm_lead_id and workspace are kept in the record by the status middleware (database.tracks.source_fields)
    process_asset_source(
        asset_id,
        source,
        filename=filename,
        content_type=content_type,
        generation=generation_of(CurrentMessage.get_current_message()),
        settings=_settings,
    )
