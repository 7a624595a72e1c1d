"""Kommo webhook bodies: PHP bracket form keys -> typed events -> stored once -> handlers."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import Annotated, Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationError

from worker_service.database import CrmEvent, CrmLink, session, utcnow

logger = logging.getLogger(__name__)
_KEY_PART = re.compile(r"\[([^\]]*)\]")


def parse_form(body: str) -> dict[str, Any]:
    """``leads[status][0][id]=1`` -> ``{"leads": {"status": {"0": {"id": "1"}}}}``."""
    tree: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head) :])]
        node = tree
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return tree


#: the integers the ledger's columns hold (BIGINT): Kommo's ids and unix times are far inside it
INT64 = (-(2**63), 2**63 - 1)


def _number(value: Any) -> int | None:
    """Kommo sends numbers as form strings, sometimes blank ("price=") or decorated ("22 500", "1.0"):
    a value that is not a number, or not one the ledger can hold (``1e300``, ``inf``, 30 digits), is unknown
    (None), and never drops the event it belongs to."""
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int):
        number = value
    else:
        text = str(value).strip().replace(" ", "").replace("\u00a0", "")
        if not text or len(text) > 40:
            return None
        try:
            number = int(text) if text.lstrip("+-").isdigit() else int(float(text))
        except (ValueError, OverflowError):  # int(float("1e400")): OverflowError, not ValueError
            return None
    return number if INT64[0] <= number <= INT64[1] else None


def _id(value: Any) -> int:
    """A required id: a number the ledger can hold, or the item is malformed (skipped, the rest kept)."""
    number = _number(value)
    if number is None:
        raise ValueError(f"not an id: {str(value)[:40]!r}")
    return number


Number = Annotated[int | None, BeforeValidator(_number)]
Id = Annotated[int, BeforeValidator(_id)]


class LeadStatusChanged(BaseModel):
    """``leads[status][i]``: a lead moved to another status (142 won, 143 lost by amo convention).

    ``updated_at`` (or the older ``last_modified``) is Kommo's unix time of the change: the ledger never
    takes a status older than the one it holds.
    """

    model_config = ConfigDict(extra="allow")
    id: Id
    status_id: Id
    pipeline_id: Number = None
    old_status_id: Number = None
    old_pipeline_id: Number = None
    price: Number = None
    updated_at: Number = None
    last_modified: Number = None

    @property
    def changed_at(self) -> int | None:
        return self.updated_at or self.last_modified


class EntityChanged(BaseModel):
    """Any other ``{entity}[{action}][i]`` event: kept with its fields."""

    model_config = ConfigDict(extra="allow")
    id: Number = None


TYPED: dict[tuple[str, str], type[BaseModel]] = {("leads", "status"): LeadStatusChanged}


def events_of(tree: dict[str, Any]) -> list[tuple[str, str, BaseModel]]:
    out = []
    for entity, actions in tree.items():
        if entity == "account" or not isinstance(actions, dict):
            continue
        for action, items in actions.items():
            if not isinstance(items, dict):
                continue
            for _index, fields in sorted(items.items()):
                if not isinstance(fields, dict):
                    continue
                model = TYPED.get((entity, action), EntityChanged)
                try:
                    out.append((entity, action, model.model_validate(fields)))
                except ValidationError as exc:
                    logger.warning(
                        "Ignoring malformed %s.%s webhook item: %s", entity, action, exc.errors()[:2]
                    )
    return out


def _on_lead_status(event: LeadStatusChanged) -> None:
    """Apply the status unless the ledger holds a newer one (webhooks arrive in any order, and again)."""
    now = utcnow()
    changed_at = event.changed_at
    lead = (CrmLink.kind == "lead") & (CrmLink.kommo_id == event.id)
    exists = CrmLink.select().where(lead).exists()
    if not exists:
        CrmLink.insert(
            kind="lead",
            key=f"kommo:{event.id}",
            kommo_id=event.id,
            status_id=event.status_id,
            pipeline_id=event.pipeline_id,
            price=event.price,
            status_changed_at=changed_at,
            updated_at=now,
        ).on_conflict_ignore().execute()
        return
    # an event without Kommo's time cannot prove it is newer: it applies only where no time is known yet
    not_newer = (
        CrmLink.status_changed_at.is_null()
        if changed_at is None
        else CrmLink.status_changed_at.is_null() | (CrmLink.status_changed_at <= changed_at)
    )
    applied = (
        CrmLink.update(
            status_id=event.status_id,
            pipeline_id=event.pipeline_id,
            price=event.price if event.price is not None else CrmLink.price,
            status_changed_at=changed_at if changed_at is not None else CrmLink.status_changed_at,
            updated_at=now,
        )
        .where(lead & not_newer)
        .execute()
    )
    if not applied:
        logger.info(
            "Lead %s: ignoring status %s of %s, older than the one in the ledger.",
            event.id,
            event.status_id,
            changed_at,
        )


HANDLERS: dict[tuple[str, str], Callable[[Any], None]] = {("leads", "status"): _on_lead_status}


def store_and_dispatch(body: str) -> list[CrmEvent]:
    """Store each event once (a redelivered body changes nothing) and run its handler in the same transaction."""
    tree = parse_form(body)
    account = tree.get("account", {}) if isinstance(tree.get("account"), dict) else {}
    stored = []
    with session(transaction=True):
        for entity, action, event in events_of(tree):
            fields = event.model_dump(mode="json")
            fingerprint = hashlib.sha256(
                json.dumps([entity, action, fields], sort_keys=True).encode()
            ).hexdigest()
            inserted = (
                CrmEvent.insert(
                    fingerprint=fingerprint,
                    entity=entity,
                    action=action,
                    kommo_id=getattr(event, "id", None),
                    account_id=_int(account.get("id")),
                    fields=fields,
                    handled_at=utcnow(),
                )
                .on_conflict_ignore()
                .execute()
            )
            if not inserted:
                continue
            handler = HANDLERS.get((entity, action))
            if handler:
                handler(event)
            stored.append(CrmEvent.get(CrmEvent.fingerprint == fingerprint))
    return stored


def _int(value: Any) -> int | None:
    return _number(value)
