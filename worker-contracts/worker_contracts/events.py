"""Outcome events the worker POSTs to EVENTS_WEBHOOK_URL, and the check of their signature.

The body is the JSON of :class:`OutcomeEvent`; the header ``X-Worker-Signature`` is
``sha256=<hex HMAC-SHA256 of the raw body, keyed with EVENTS_WEBHOOK_SECRET>``.  Delivery is at least
once and in order per asset: deduplicate by ``event_id``.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict

SIGNATURE_HEADER = "X-Worker-Signature"
EventName = Literal[
    "asset.extracted",
    "asset.failed",
    "asset.deleted",
    "knowledge.done",
    "knowledge.failed",
    "knowledge.skipped",
]


class OutcomeEvent(BaseModel):
    """What happened to an asset: a terminal status of its text (``asset.*``) or of its knowledge graph."""

    model_config = ConfigDict(extra="ignore", frozen=True)  # a later minor version may add keys
    event_id: str
    event: EventName
    asset_id: str
    status: str
    error_code: str | None = None
    occurred_at: datetime
    entities: int | None = (
        None  # knowledge.done (1.2): the asset's entities and relations in its workspace graph
    )
    relations: int | None = None


class InvalidSignature(ValueError):
    """The body was not signed with this secret (or was changed on the way)."""


def sign(body: bytes, secret: str) -> str:
    """The ``X-Worker-Signature`` value of a raw body."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_signature(body: bytes, signature: str | None, secret: str) -> bool:
    """Constant-time check of ``X-Worker-Signature`` against the raw body (before parsing it).  Any header is an
    answer, never an exception: compared as bytes (a str with a non-ASCII character made ``compare_digest``
    raise TypeError, so a receiver answered 500 instead of 401)."""
    if not signature:
        return False
    return hmac.compare_digest(sign(body, secret).encode(), signature.encode("utf-8", "surrogateescape"))


def parse_event(body: bytes, signature: str | None, secret: str) -> OutcomeEvent:
    """The event of a signed body; raises InvalidSignature, or pydantic's ValidationError for a bad body."""
    if not verify_signature(body, signature, secret):
        raise InvalidSignature("X-Worker-Signature does not match the body")
    return OutcomeEvent.model_validate_json(body)
