"""An operator's "retry now" for an asset whose work waits for its next attempt (dashboard and API).

The delayed retry is not hunted down in the broker (a Redis worker may hold it in memory until due): a new
message of a new generation is sent at once, rebuilt from the record as the reconciler rebuilds a lost one
(worker_service.reconciliation), with a fresh retry budget.  The old copy, when it comes due, belongs to an older
generation and is skipped (middleware.status).  Audited.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from dramatiq.message import Message

from worker_service.database import AuditEntry, session
from worker_service.database.models import Asset
from worker_service.reconciliation import ACTORS, Candidate, rebuild_kwargs


def retry_now(asset_id: str, broker: Any, who: str) -> str | None:
    """Send the asset's retrying work (its extraction, else its knowledge) again now; returns the track
    (``asset`` or ``knowledge``), or None when nothing of the asset is retrying."""
    with session():
        asset = Asset.get_or_none(Asset.asset_id == asset_id)
    if asset is None:
        return None
    track = (
        "asset"
        if asset.status == "retrying"
        else "knowledge"
        if asset.knowledge_status == "retrying"
        else None
    )
    if track is None:
        return None
    candidate = Candidate(
        track=track,
        asset_id=asset_id,
        status="retrying",
        generation=(0, ""),
        source=asset.source,
        filename=asset.filename,
        content_type=asset.content_type,
        crm_lead_id=asset.crm_lead_id,
        workspace=asset.workspace,
        asset_status=asset.status,
    )
    kwargs = rebuild_kwargs(candidate)
    if kwargs is None:
        return None
    actor_name, queue = ACTORS[track]
    now = int(time.time() * 1000)
    message: Message[Any] = Message(
        queue_name=queue,
        actor_name=actor_name,
        args=(),
        kwargs=kwargs,
        message_id=str(uuid.uuid4()),
        message_timestamp=now,
        options={"generation": now, "budget_started_at": now, "retried_now_by": who},
    )
    broker.enqueue(message)
    with session(transaction=True):
        AuditEntry.create(
            who=who,
            action="asset-retry-now",
            target=asset_id,
            count=1,
            detail={"track": track, "message_id": message.message_id},
        )
    return track
