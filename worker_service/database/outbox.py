"""The outbox of outcome events: each is written in the transaction of the terminal status it reports.

So a status and its event exist together or not at all: a worker killed between the status and the
delivery leaves the event pending, and the dispatcher (events.py) delivers it later.  Events are
recorded only when EVENTS_WEBHOOK_URL is set (nobody to tell otherwise).
"""

from __future__ import annotations

import uuid

from worker_service.database.models import OutboxEvent, utcnow


def record(track: str, asset_id: str, status: str, error_code: str | None) -> None:
    """Add ``{track}.{status}`` for ``asset_id`` to the outbox; call inside the status's transaction."""
    from settings import get_settings

    if not get_settings().events_webhook_url:
        return
    OutboxEvent.insert(event_id=str(uuid.uuid4()), event=f"{track}.{status}", asset_id=asset_id, status=status,
                       error_code=error_code, occurred_at=utcnow()).execute()
