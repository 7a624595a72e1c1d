"""CRM domain: Kommo contacts, leads, notes and webhook events, exactly once under redelivery.

Actors on queue ``crm`` (payloads in ``worker_contracts``): ``crm_upsert_contact``, ``crm_create_lead``,
``crm_add_note`` with ``rate_limit="kommo"`` (one fleet-wide slot per HTTP request), and
``crm_handle_webhook`` (calls no upstream). Attempt/time budgets and soft time limit from the CRM_*
settings. How each stays exactly-once is ``worker_service.crm.sync``.
"""

from __future__ import annotations

from typing import Any

import dramatiq

from settings import get_settings
from worker_service.crm import sync

_settings = get_settings()
_OPTIONS: dict[str, Any] = {
    "queue_name": "crm",
    "max_attempts": _settings.crm_max_attempts,
    "retry_hours": _settings.crm_retry_hours,
    "time_limit": _settings.crm_time_limit_seconds * 1000,
}


@dramatiq.actor(rate_limit="kommo", **_OPTIONS)
def crm_upsert_contact(
    external_id: str, name: str, emails: list[str] | None = None, phones: list[str] | None = None
) -> None:
    sync.upsert_contact(external_id, name, emails or [], phones or [], settings=_settings)


@dramatiq.actor(rate_limit="kommo", **_OPTIONS)
def crm_create_lead(
    external_id: str, name: str, price: int | None = None, contact_external_id: str | None = None
) -> None:
    sync.create_lead(external_id, name, price, contact_external_id, settings=_settings)


@dramatiq.actor(rate_limit="kommo", **_OPTIONS)
def crm_add_note(entity: str, entity_id: int, text: str, idempotency_key: str) -> None:
    sync.add_note(entity, entity_id, text, idempotency_key, settings=_settings)


@dramatiq.actor(**_OPTIONS)
def crm_handle_webhook(body: str, token: str) -> None:
    sync.handle_webhook(body, token, settings=_settings)
