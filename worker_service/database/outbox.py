"""The outbox of outcome events: each is written in the transaction of the terminal status it reports.

So a status and its event exist together or not at all: a worker killed between the status and the
delivery leaves the event pending, and the dispatcher (events.py) delivers it later.  Events are
recorded only when EVENTS_WEBHOOK_URL is set (nobody to tell otherwise).
"""

from __future__ import annotations

import uuid

from worker_service.database.models import Asset, OutboxEvent, utcnow


def record(track: str, asset_id: str, status: str, error_code: str | None) -> None:
    """Add ``{track}.{status}`` for ``asset_id`` to the outbox; call inside the status's transaction.
    ``knowledge.done`` carries the asset's entity and relation counts (contract 1.2), as the record has them."""
    from settings import get_settings

    if not get_settings().events_webhook_url:
        return
    details = None
    if (track, status) == ("knowledge", "done"):
        counts = (
            Asset.select(Asset.knowledge_entities, Asset.knowledge_relations)
            .where(Asset.asset_id == asset_id)
            .tuples()
            .first()
        )
        details = {"entities": counts[0] or 0, "relations": counts[1] or 0} if counts else None
    OutboxEvent.insert(
        event_id=str(uuid.uuid4()),
        event=f"{track}.{status}",
        asset_id=asset_id,
        status=status,
        error_code=error_code,
        occurred_at=utcnow(),
        details=details,
    ).execute()
