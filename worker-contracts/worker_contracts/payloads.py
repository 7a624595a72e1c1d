"""Payload models of the pinned message contracts (docs/contracts.rst).

Payloads travel in kwargs only (args ``[]``).  Every model forbids unknown
fields and is strict about types, so a typo at the sender fails at the
sender, and the worker checks again (middleware.validation).
"""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StrictStr, field_validator

NonEmpty = Annotated[StrictStr, Field(min_length=1, max_length=10_000)]
Identifier = Annotated[StrictStr, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9._:@-]+$")]


class Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


#: what a ``source`` may be, as a JSON Schema pattern too (the TypeScript sender checks the same)
SOURCE_PATTERN = r"^(file:[\s\S]+|https?://[\s\S]+)$"
SOURCE_RULE = "source must be 'file:<path relative to STORAGE_ROOT>' or an https:// URL"


class ProcessAsset(Payload):
    """``process_asset`` on ``assets``: fetch, sniff, extract and store an asset's text."""

    asset_id: Identifier
    source: Annotated[NonEmpty, Field(json_schema_extra={"pattern": SOURCE_PATTERN, "x-error": SOURCE_RULE})]
    filename: Annotated[StrictStr, Field(max_length=1000)] | None = None
    content_type: Annotated[StrictStr, Field(max_length=200)] | None = None
    crm_lead_id: StrictInt | None = None
    #: whose knowledge graph the asset feeds (1.2); entities never merge across workspaces
    workspace: Identifier | None = None

    @field_validator("source")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if re.match(SOURCE_PATTERN, value) is None:
            raise ValueError(SOURCE_RULE)
        return value


class ExtractKnowledge(Payload):
    """``extract_knowledge`` on ``knowledge``: build the asset's knowledge graph."""

    asset_id: Identifier


class CrmUpsertContact(Payload):
    """``crm_upsert_contact`` on ``crm``: find by external id, email or phone, then create or update."""

    external_id: Identifier
    name: NonEmpty
    emails: list[Annotated[StrictStr, Field(min_length=3, max_length=320)]] | None = None
    phones: list[Annotated[StrictStr, Field(min_length=3, max_length=50)]] | None = None


class CrmCreateLead(Payload):
    """``crm_create_lead`` on ``crm``: idempotent by external id, linked to its contact."""

    external_id: Identifier
    name: NonEmpty
    price: StrictInt | None = None
    contact_external_id: Identifier | None = None


class CrmAddNote(Payload):
    """``crm_add_note`` on ``crm``: a note created once per idempotency key."""

    entity: Literal["leads", "contacts"]
    entity_id: StrictInt
    text: NonEmpty
    idempotency_key: Annotated[StrictStr, Field(min_length=1, max_length=300)]


class CrmHandleWebhook(Payload):
    """``crm_handle_webhook`` on ``crm``: a raw form-urlencoded Kommo webhook body and its URL token."""

    body: Annotated[StrictStr, Field(max_length=5_000_000)]
    token: StrictStr


#: MAJOR.MINOR of the wire contract, sent in every message's options (``contract_version``).  A minor
#: version adds optional fields or actors only; a major version breaks compatibility.
CONTRACT_VERSION = "1.2"
#: the workspace of a ``process_asset`` that names none
DEFAULT_WORKSPACE = "default"

#: actor name -> (queue, payload model).  The single registry for senders and actors.
CONTRACTS: dict[str, tuple[str, type[Payload]]] = {
    "process_asset": ("assets", ProcessAsset),
    "extract_knowledge": ("knowledge", ExtractKnowledge),
    "crm_upsert_contact": ("crm", CrmUpsertContact),
    "crm_create_lead": ("crm", CrmCreateLead),
    "crm_add_note": ("crm", CrmAddNote),
    "crm_handle_webhook": ("crm", CrmHandleWebhook),
}
