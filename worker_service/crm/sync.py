"""Kommo contacts, leads, notes and webhook events, exactly once under redelivery (the work of the crm actors).

Our marker on an entity is the tag ``ext:<external_id>``; Kommo's ``query`` searches filled fields, not tags, so
an entity is looked up with the documented ``filter[name]`` (or ``query`` on
its e-mails and phones) and recognised by reading its tags.

``crm_upsert_contact``
    ledger -> Kommo lookup (name + our tag, then e-mails, then phones) ->
    update or create; the ledger is written after Kommo answers, and the
    lookup finds a contact created by a worker that died (or lost the answer)
    before that write.  An update merges: the contact is read, our e-mails and
    phones are added to the values already there, our tag is added with
    ``tags_to_add``; what sales staff added by hand stays.
``crm_create_lead``
    the same for leads (name + our tag), linked to the contact of
    ``contact_external_id``.
``crm_add_note``
    ledger -> lookup of the entity's notes for the key's marker -> create.
    Guarantee: one note per idempotency key, also when the worker dies after
    Kommo accepted the note and before the ack, as long as Kommo lists a note
    it has accepted (read-after-write on the notes list); the marker
    ``[ref:<hash>]`` at the end of the text is how a note is recognised.
``crm_handle_webhook``
    a wrong token is a ``Forbidden`` failure: dead-lettered ``forbidden`` at
    once; otherwise the form body becomes typed events, stored once each, and
    handlers run (a lead status change updates the lead's ledger row unless
    the row already holds a newer one, by Kommo's own timestamps).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import dramatiq
import redis

from settings import Settings
from worker_service import identifiers
from worker_service.crm.kommo import KommoClient, OAuthApp
from worker_service.crm.webhooks import store_and_dispatch
from worker_service.database import CrmLink, session, utcnow
from worker_service.errors import Forbidden, PermanentError, TransientError
from worker_service.ratelimit import limiter_of

logger = logging.getLogger(__name__)
KEY_LEASE_SECONDS = 30  # longer than one lookup + create (Kommo read timeout 20 s)


def _client(settings: Settings) -> KommoClient:
    if not settings.kommo_base_url:
        raise PermanentError("KOMMO_BASE_URL is not set", error_code="kommo_not_configured")
    oauth = None
    if settings.kommo_client_id and settings.kommo_client_secret:
        oauth = OAuthApp(
            settings.kommo_client_id,
            settings.kommo_client_secret,
            settings.kommo_redirect_uri or "",
            settings.kommo_refresh_token,
        )
    if not oauth and not settings.kommo_access_token:
        raise PermanentError(
            "neither KOMMO_ACCESS_TOKEN nor OAuth settings are set", error_code="kommo_not_configured"
        )
    broker = dramatiq.get_broker()
    return KommoClient(
        base_url=settings.kommo_base_url,
        limiter=limiter_of(broker),
        redis_client=limiter_of(broker).client,
        long_lived_token=settings.kommo_access_token,
        oauth=oauth,
        block_pause_ms=settings.kommo_block_pause_seconds * 1000,
        auth_pause_ms=settings.kommo_auth_pause_seconds * 1000,
    )


@contextmanager
def _exclusive(kind: str, key: str) -> Iterator[None]:
    """One worker at a time per CRM key, fleet-wide: two copies of a message never both create."""
    # A lease, not a forever-lock: a worker killed inside the section frees the key after KEY_LEASE_SECONDS.
    lock = limiter_of(dramatiq.get_broker()).client.lock(
        f"worker:crm:{kind}:{hashlib.sha256(key.encode()).hexdigest()[:32]}",
        timeout=KEY_LEASE_SECONDS,
        blocking_timeout=5,
    )
    if not lock.acquire():
        raise TransientError(
            f"{kind} {key} is being written by another worker",
            error_code="crm_key_busy",
            retry_after_ms=2_000,
            spends_attempt=False,
        )
    try:
        yield
    finally:
        try:
            lock.release()
        except redis.exceptions.LockError:  # expired: the other holder's write is idempotent anyway
            pass


def _ledger(kind: str, key: str) -> CrmLink | None:
    with session():
        return CrmLink.get_or_none(CrmLink.kind == kind, CrmLink.key == key)


def _remember(kind: str, key: str, kommo_id: int, **extra: Any) -> None:
    with session(transaction=True):
        (
            CrmLink.insert(kind=kind, key=key, kommo_id=kommo_id, **extra)
            .on_conflict(
                conflict_target=[CrmLink.kind, CrmLink.key],
                update={CrmLink.kommo_id: kommo_id, CrmLink.updated_at: utcnow()},
            )
            .execute()
        )


def _tag(external_id: str) -> str:
    return f"ext:{external_id}"


def _has_tag(item: dict[str, Any], tag: str) -> bool:
    return any(t.get("name") == tag for t in (item.get("_embedded") or {}).get("tags") or [])


def _field_values(item: dict[str, Any], code: str) -> set[str]:
    values = set()
    for f in item.get("custom_fields_values") or []:
        if f.get("field_code") == code:
            values |= {str(v.get("value")).strip().lower() for v in f.get("values") or []}
    return values


def _find_tagged(client: KommoClient, kind: str, name: str, tag: str) -> int | None:
    """The entity named ``name`` that carries our tag (``filter[name]`` is exact; tags are read, not searched)."""
    for item in client.list(f"/api/v4/{kind}", {"filter[name][0]": name, "limit": 250}):
        if _has_tag(item, tag):
            return int(item["id"])
    return None


def _find_contact(
    client: KommoClient, external_id: str, name: str, emails: list[str], phones: list[str]
) -> int | None:
    found = _find_tagged(client, "contacts", name, _tag(external_id))
    if found is not None:
        return found
    for code, values in (("EMAIL", emails), ("PHONE", phones)):
        for value in values:
            for item in client.list("/api/v4/contacts", {"query": value, "limit": 50}):  # filled fields
                if value.strip().lower() in _field_values(item, code):
                    return int(item["id"])
    return None


def merged_fields(current: dict[str, Any], emails: list[str], phones: list[str]) -> list[dict[str, Any]]:
    """EMAIL and PHONE with ours added to the values already there (a PATCH replaces a listed field's values:
    sending only ours would erase what sales staff added).  Fields we do not send are not listed."""
    out = []
    for code, ours in (("EMAIL", emails), ("PHONE", phones)):
        if not ours:
            continue
        existing = next(
            (f for f in current.get("custom_fields_values") or [] if f.get("field_code") == code), None
        )
        values = [
            {k: v for k, v in value.items() if k in ("value", "enum_code", "enum_id")}
            for value in (existing or {}).get("values") or []
        ]
        known = {str(v.get("value", "")).strip().lower() for v in values}
        values += [
            {"value": value, "enum_code": "WORK"} for value in ours if value.strip().lower() not in known
        ]
        out.append({"field_code": code, "values": values})
    return out


def upsert_contact(
    external_id: str, name: str, emails: list[str], phones: list[str], *, settings: Settings
) -> None:
    """Create or update the contact tagged ``ext:<external_id>`` (merging e-mails and phones), then the ledger."""
    with _exclusive("contact", external_id):
        _upsert_contact(external_id, name, emails, phones, settings)


def _upsert_contact(
    external_id: str, name: str, emails: list[str], phones: list[str], settings: Settings
) -> None:
    client = _client(settings)
    link = _ledger("contact", external_id)
    kommo_id = link.kommo_id if link else _find_contact(client, external_id, name, emails, phones)
    if kommo_id is None:
        body: dict[str, Any] = {"name": name, "_embedded": {"tags": [{"name": _tag(external_id)}]}}
        fields = merged_fields({}, emails, phones)
        if fields:
            body["custom_fields_values"] = fields
        kommo_id = client.create_one("/api/v4/contacts", body)
        logger.info("Kommo contact %s created for %s", kommo_id, external_id)
    else:
        current = client.request("GET", f"/api/v4/contacts/{kommo_id}") or {}
        update: dict[str, Any] = {"name": name, "tags_to_add": [{"name": _tag(external_id)}]}
        fields = merged_fields(current, emails, phones)
        if fields:
            update["custom_fields_values"] = fields
        client.request("PATCH", f"/api/v4/contacts/{kommo_id}", update)
        logger.info("Kommo contact %s updated for %s", kommo_id, external_id)
    _remember("contact", external_id, kommo_id)
    for key in sorted(
        {f"email:{identifiers.email(e)}" for e in emails} | {f"phone:{identifiers.phone(p)}" for p in phones}
    ):
        _remember(
            identifiers.CONTACT_IDENTIFIER, key, kommo_id
        )  # what the knowledge graph links its entities by


def create_lead(
    external_id: str, name: str, price: int | None, contact_external_id: str | None, *, settings: Settings
) -> None:
    """Create the lead tagged ``ext:<external_id>`` once, linked to its contact."""
    with _exclusive("lead", external_id):
        _create_lead(external_id, name, price, contact_external_id, settings)


def _create_lead(
    external_id: str, name: str, price: int | None, contact_external_id: str | None, settings: Settings
) -> None:
    client = _client(settings)
    if _ledger("lead", external_id):
        return
    tag = _tag(external_id)
    found = _find_tagged(client, "leads", name, tag)
    if found is not None:  # created by an earlier attempt whose answer was lost
        _remember("lead", external_id, found, price=price)
        return
    embedded: dict[str, Any] = {"tags": [{"name": tag}]}
    if contact_external_id:
        contact = _ledger("contact", contact_external_id)
        if contact is None or contact.kommo_id is None:
            raise TransientError(
                f"contact {contact_external_id} is not in Kommo yet", error_code="contact_pending"
            )
        embedded["contacts"] = [{"id": contact.kommo_id}]
    body: dict[str, Any] = {"name": name, "_embedded": embedded}
    if price is not None:
        body["price"] = price
    kommo_id = client.create_one("/api/v4/leads", body)
    _remember("lead", external_id, kommo_id, price=price)
    logger.info("Kommo lead %s created for %s", kommo_id, external_id)


def note_marker(idempotency_key: str) -> str:
    return f"[ref:{hashlib.sha256(idempotency_key.encode()).hexdigest()[:16]}]"


def add_note(entity: str, entity_id: int, text: str, idempotency_key: str, *, settings: Settings) -> None:
    """Add a note once per idempotency key, also when an earlier attempt's answer was lost."""
    with _exclusive("note", idempotency_key):
        _add_note(entity, entity_id, text, idempotency_key, settings)


def _add_note(entity: str, entity_id: int, text: str, idempotency_key: str, settings: Settings) -> None:
    if _ledger("note", idempotency_key):
        return
    client = _client(settings)
    marker = note_marker(idempotency_key)
    for page in range(1, 41):
        notes = client.list(f"/api/v4/{entity}/{entity_id}/notes", {"page": page, "limit": 250})
        for note in notes:
            if marker in str((note.get("params") or {}).get("text", "")):
                _remember("note", idempotency_key, int(note["id"]), entity=entity, entity_id=entity_id)
                logger.info(
                    "Note for %s already in Kommo (%s); not creating another.", idempotency_key, note["id"]
                )
                return
        if len(notes) < 250:
            break
    kommo_id = client.create_one(
        f"/api/v4/{entity}/{entity_id}/notes",
        {"note_type": "common", "params": {"text": f"{text}\n\n{marker}"}},
    )
    _remember("note", idempotency_key, kommo_id, entity=entity, entity_id=entity_id)


def handle_webhook(body: str, token: str, *, settings: Settings) -> None:
    """Check the webhook's secret (a mismatch is ``Forbidden``), then store and dispatch its events once each."""
    expected = settings.kommo_webhook_token
    if not expected or not hmac.compare_digest(token.encode(), expected.encode()):
        raise Forbidden("webhook token does not match KOMMO_WEBHOOK_TOKEN")
    events = store_and_dispatch(body)
    logger.info(
        "Kommo webhook: %d new event(s): %s",
        len(events),
        ", ".join(f"{e.entity}.{e.action}#{e.kommo_id}" for e in events),
    )
