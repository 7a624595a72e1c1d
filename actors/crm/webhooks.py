"""Kommo webhook bodies: PHP bracket form keys -> typed events -> stored once -> handlers."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from pydantic import BaseModel, ConfigDict, ValidationError

from database import CrmEvent, CrmLink, session, utcnow

logger = logging.getLogger(__name__)
_KEY_PART = re.compile(r"\[([^\]]*)\]")


def parse_form(body: str) -> dict[str, Any]:
    """``leads[status][0][id]=1`` -> ``{"leads": {"status": {"0": {"id": "1"}}}}``."""
    tree: dict[str, Any] = {}
    for key, value in parse_qsl(body, keep_blank_values=True):
        head = key.split("[", 1)[0]
        parts = [head, *_KEY_PART.findall(key[len(head):])]
        node = tree
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                child = node[part] = {}
            node = child
        node[parts[-1]] = value
    return tree


class LeadStatusChanged(BaseModel):
    """``leads[status][i]``: a lead moved to another status (142 won, 143 lost by amo convention)."""

    model_config = ConfigDict(extra="allow")
    id: int
    status_id: int
    pipeline_id: int | None = None
    old_status_id: int | None = None
    old_pipeline_id: int | None = None
    price: int | None = None


class EntityChanged(BaseModel):
    """Any other ``{entity}[{action}][i]`` event: kept with its fields."""

    model_config = ConfigDict(extra="allow")
    id: int | None = None


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
                    logger.warning("Ignoring malformed %s.%s webhook item: %s", entity, action, exc.errors()[:2])
    return out


def _on_lead_status(event: LeadStatusChanged) -> None:
    now = utcnow()
    updated = (CrmLink.update(status_id=event.status_id, pipeline_id=event.pipeline_id,
                              price=event.price if event.price is not None else CrmLink.price, updated_at=now)
               .where(CrmLink.kind == "lead", CrmLink.kommo_id == event.id).execute())
    if not updated:
        CrmLink.insert(kind="lead", key=f"kommo:{event.id}", kommo_id=event.id, status_id=event.status_id,
                       pipeline_id=event.pipeline_id, price=event.price).on_conflict_ignore().execute()


HANDLERS: dict[tuple[str, str], Callable[[Any], None]] = {("leads", "status"): _on_lead_status}


def store_and_dispatch(body: str) -> list[CrmEvent]:
    """Store each event once (a redelivered body changes nothing) and run its handler in the same transaction."""
    tree = parse_form(body)
    account = tree.get("account", {}) if isinstance(tree.get("account"), dict) else {}
    stored = []
    with session(transaction=True):
        for entity, action, event in events_of(tree):
            fields = event.model_dump(mode="json")
            fingerprint = hashlib.sha256(json.dumps([entity, action, fields], sort_keys=True).encode()).hexdigest()
            inserted = (CrmEvent.insert(fingerprint=fingerprint, entity=entity, action=action,
                                        kommo_id=getattr(event, "id", None),
                                        account_id=_int(account.get("id")), fields=fields, handled_at=utcnow())
                        .on_conflict_ignore().execute())
            if not inserted:
                continue
            handler = HANDLERS.get((entity, action))
            if handler:
                handler(event)
            stored.append(CrmEvent.get(CrmEvent.fingerprint == fingerprint))
    return stored


def _int(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None
