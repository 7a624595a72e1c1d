"""peewee models.  Times are naive UTC datetimes in the database, ISO-8601 UTC in JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, cast

import peewee

from worker_service.database.connection import database_proxy
from worker_service.masking import mask


def utcnow() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)


def iso(value: datetime | None) -> str | None:
    return value.replace(tzinfo=UTC).isoformat().replace("+00:00", "Z") if value else None


class JSONField(peewee.TextField):
    def db_value(self, value: Any) -> str | None:
        return None if value is None else json.dumps(value, ensure_ascii=False, default=str)

    def python_value(self, value: str | None) -> Any:
        return None if value is None else json.loads(value)


class BaseModel(peewee.Model):
    class Meta:
        database = database_proxy
        legacy_table_names = False


class SchemaVersion(BaseModel):
    version = peewee.IntegerField(primary_key=True)
    name = peewee.CharField()
    applied_at = peewee.DateTimeField(default=utcnow)


class Asset(BaseModel):
    """One uploaded document and the state of its processing.

    ``gen_ts``/``gen_id`` identify the generation (see middleware.status):
    a message of an older generation can never change a newer one.
    """

    asset_id = peewee.CharField(primary_key=True, max_length=200)
    source = peewee.TextField(null=True)
    filename = peewee.TextField(null=True)
    content_type = peewee.CharField(null=True)
    crm_lead_id = peewee.BigIntegerField(null=True)
    workspace = peewee.CharField(max_length=200, default="default")  # whose knowledge graph it feeds
    gen_ts = peewee.BigIntegerField(default=0)
    gen_id = peewee.CharField(default="")
    status = peewee.CharField(default="received", index=True)
    error_code = peewee.CharField(null=True)
    error_message = peewee.TextField(null=True)
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = peewee.DateTimeField(null=True)
    last_error = peewee.TextField(null=True)
    pages = peewee.IntegerField(null=True)
    chars = peewee.IntegerField(null=True)
    size = peewee.BigIntegerField(null=True)
    sha256 = peewee.CharField(null=True)
    detected_type = peewee.CharField(null=True)
    no_text = peewee.BooleanField(default=False)
    extract_seconds = peewee.FloatField(null=True)
    knowledge_status = peewee.CharField(null=True, index=True)
    knowledge_gen_ts = peewee.BigIntegerField(default=0)
    knowledge_gen_id = peewee.CharField(default="")
    knowledge_error_code = peewee.CharField(null=True)
    knowledge_error_message = peewee.TextField(null=True)
    knowledge_attempts = peewee.IntegerField(default=0)
    knowledge_next_attempt_at = peewee.DateTimeField(null=True)
    knowledge_last_error = peewee.TextField(null=True)
    knowledge_entities = peewee.IntegerField(
        null=True
    )  # the asset's entities and relations in its workspace graph
    knowledge_relations = peewee.IntegerField(null=True)
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)
    started_at = peewee.DateTimeField(null=True)
    finished_at = peewee.DateTimeField(null=True)
    knowledge_started_at = peewee.DateTimeField(null=True)
    knowledge_finished_at = peewee.DateTimeField(null=True)
    knowledge_chunks = peewee.IntegerField(null=True)  # of the last graph built
    knowledge_chunks_failed = peewee.IntegerField(
        null=True
    )  # chunks still invalid after one repair (left out)
    ocr_pages = peewee.IntegerField(null=True)  # pages (or images) read by OCR in the last extraction
    ocr_languages = peewee.CharField(null=True)  # OCR_LANGUAGES of that extraction, when it OCRed anything
    no_text_reason = peewee.CharField(
        null=True
    )  # why no_text: "ocr_unavailable" when OCR was needed and missing
    parts_skipped = peewee.IntegerField(
        null=True
    )  # parts of the document that could not be read (marked in the text)
    # pages whose OCR stayed doubtful (mean word confidence below assets.ocr.LOW_CONFIDENCE), as "3,7"
    ocr_low_confidence_pages = peewee.CharField(null=True)
    progress = peewee.CharField(
        null=True
    )  # while a long extraction runs: "OCR: page 3 of 20" (assets.progress)
    # Each track's lease (reconciliation): while not terminal, its message is presumed alive until
    # RECONCILE_GRACE_SECONDS past this; renewed at each transition and while it runs, cleared when terminal.
    lease_at = peewee.DateTimeField(null=True, default=utcnow, index=True)
    knowledge_lease_at = peewee.DateTimeField(null=True, index=True)

    class Meta:
        # the assets list (database.browse): newest first, alone or within a state, an index range a page
        indexes = (
            (("created_at", "asset_id"), False),
            (("status", "created_at", "asset_id"), False),
            (("knowledge_status", "created_at", "asset_id"), False),
        )

    PUBLIC_FIELDS = (
        "asset_id",
        "status",
        "error_code",
        "error_message",
        "attempts",
        "pages",
        "chars",
        "size",
        "sha256",
        "detected_type",
        "no_text",
        "knowledge_status",
        "knowledge_error_code",
        "knowledge_error_message",
        "created_at",
        "updated_at",
        "knowledge_chunks",
        "knowledge_chunks_failed",
        "ocr_pages",
        "ocr_languages",
        "workspace",
        "knowledge_entities",
        "knowledge_relations",
        "parts_skipped",
        "ocr_low_confidence_pages",
        "progress",
    )
    EXTRA_FIELDS = (
        "source",
        "filename",
        "content_type",
        "crm_lead_id",
        "next_attempt_at",
        "last_error",
        "extract_seconds",
        "knowledge_attempts",
        "knowledge_next_attempt_at",
        "knowledge_last_error",
        "started_at",
        "finished_at",
        "knowledge_started_at",
        "knowledge_finished_at",
        "no_text_reason",
    )

    def to_public(self) -> dict[str, Any]:
        """The record as people see it (CLI, pages, API), secrets masked by the one rule: a source URL's
        password or presigned signature, and the same inside an error message."""
        out: dict[str, Any] = {}
        for name in self.PUBLIC_FIELDS + self.EXTRA_FIELDS:
            value = getattr(self, name)
            out[name] = iso(value) if isinstance(value, datetime) else value
        out["no_text"] = bool(self.no_text)
        return cast(dict[str, Any], mask(out))


class DeletedAsset(BaseModel):
    """An asset an operator deleted, and when: a message of a generation older than that (one that was running or
    queued at the time) finds no record and writes nothing back; a newer one (an upload after it) starts afresh."""

    asset_id = peewee.CharField(primary_key=True, max_length=200)
    deleted_at_ms = peewee.BigIntegerField()
    deleted_by = peewee.CharField()


class AssetText(BaseModel):
    """Extracted text, kept out of the rows that status queries read."""

    asset = peewee.ForeignKeyField(Asset, primary_key=True, on_delete="CASCADE", column_name="asset_id")
    sha256 = peewee.CharField()
    text = peewee.TextField()
    updated_at = peewee.DateTimeField(default=utcnow)


class DeadLetter(BaseModel):
    """A message that failed for good, with its *final* error; the only dead-letter store."""

    message_id = peewee.CharField(index=True)
    queue = peewee.CharField(index=True)
    actor = peewee.CharField(index=True)
    args = JSONField(default="[]")
    kwargs = JSONField(null=True)
    options = JSONField(null=True)
    raw_body = peewee.TextField(null=True)
    error_type = peewee.CharField(index=True)
    error_code = peewee.CharField(
        null=True
    )  # the domain code its record got (``corrupt``); NULL before migration 14
    asset_id = peewee.CharField(null=True, max_length=200)  # the asset the message names, if any
    exception_type = peewee.CharField(null=True)
    error_message = peewee.TextField(null=True)
    traceback = peewee.TextField(null=True)
    attempts = peewee.IntegerField(default=0)
    history = JSONField(null=True)
    first_enqueued_at = peewee.DateTimeField(null=True)
    failed_at = peewee.DateTimeField(default=utcnow, index=True)
    state = peewee.CharField(default="dead", index=True)
    state_changed_at = peewee.DateTimeField(null=True)
    state_changed_by = peewee.CharField(null=True)

    class Meta:
        # the list pages newest first within a state, alone or filtered by one column: an index range each
        indexes = (
            (("state", "id"), False),
            (("state", "error_type", "id"), False),
            (("state", "actor", "id"), False),
            (("state", "queue", "id"), False),
            (("state", "error_code", "id"), False),
            (("asset_id", "id"), False),
        )


class DeadLetterTally(BaseModel):
    """How many dead letters share a state, queue, actor and error type: kept by database triggers
    (migration 12) on every insert, update and delete of ``dead_letter``, so the dashboard's and the API's counts
    are a sum over a few dozen rows, exact, at any number of dead letters.  Never written by the service."""

    state = peewee.CharField()
    queue = peewee.CharField()
    actor = peewee.CharField()
    error_type = peewee.CharField()
    n = peewee.BigIntegerField(default=0)

    class Meta:
        table_name = "dead_letter_tally"
        primary_key = peewee.CompositeKey("state", "queue", "actor", "error_type")


class AuditEntry(BaseModel):
    """One operator action: who, when, what, how many."""

    at = peewee.DateTimeField(default=utcnow, index=True)
    who = peewee.CharField()
    action = peewee.CharField()
    target = peewee.TextField(null=True)
    count = peewee.IntegerField(default=0)
    detail = JSONField(null=True)


class LlmUsage(BaseModel):
    """Token usage and cost of the LLM calls paid for one asset's knowledge generation (cache hits cost 0).

    Added to as each chunk's result is stored, so the per-asset budget counts what earlier, interrupted
    deliveries of the same generation paid; a new generation starts again from zero.
    """

    asset = peewee.ForeignKeyField(Asset, primary_key=True, on_delete="CASCADE", column_name="asset_id")
    gen_ts = peewee.BigIntegerField(default=0)
    gen_id = peewee.CharField(default="")
    model = peewee.CharField(null=True)
    requests = peewee.IntegerField(default=0)
    prompt_tokens = peewee.IntegerField(default=0)
    completion_tokens = peewee.IntegerField(default=0)
    cost_usd = peewee.FloatField(default=0.0)
    updated_at = peewee.DateTimeField(default=utcnow)


class LlmChunk(BaseModel):
    """One chunk's LLM extraction, keyed by what determines it: the chunk's text, the model, the prompt version.

    A checkpoint (an interrupted extraction resumes after the chunks already here) and a cache (the same
    text in another asset, a re-upload or a requeued dead letter costs nothing).  A chunk still invalid
    after its repair is kept too (``valid`` false), so it is not paid for again either.  Rows older than
    KNOWLEDGE_CACHE_DAYS are purged by the reconciler.
    """

    key = peewee.CharField(primary_key=True, max_length=64)
    model = peewee.CharField()
    prompt_version = peewee.CharField()
    valid = peewee.BooleanField()
    result = peewee.TextField()  # the validated extraction as JSON; when not valid, why
    requests = peewee.IntegerField(default=0)
    prompt_tokens = peewee.IntegerField(default=0)
    completion_tokens = peewee.IntegerField(default=0)
    cost_usd = peewee.FloatField(default=0.0)
    created_at = peewee.DateTimeField(default=utcnow, index=True)


class KommoToken(BaseModel):
    """The current OAuth2 pair (one row); refresh tokens are single-use, so only one worker may spend one."""

    id = peewee.IntegerField(primary_key=True, default=1)
    access_token = peewee.TextField()
    refresh_token = peewee.TextField(null=True)
    expires_at = peewee.DateTimeField(null=True)
    updated_at = peewee.DateTimeField(default=utcnow)


class CrmLink(BaseModel):
    """Local ledger: our key (external id or idempotency key) -> Kommo id, plus the last known lead state."""

    kind = peewee.CharField()  # contact | lead | note
    key = peewee.CharField()
    kommo_id = peewee.BigIntegerField(null=True, index=True)
    entity = peewee.CharField(null=True)  # for notes: leads | contacts
    entity_id = peewee.BigIntegerField(null=True)
    status_id = peewee.BigIntegerField(null=True)
    pipeline_id = peewee.BigIntegerField(null=True)
    price = peewee.BigIntegerField(null=True)
    status_changed_at = peewee.BigIntegerField(null=True)  # Kommo's unix time of the status applied last
    created_at = peewee.DateTimeField(default=utcnow)
    updated_at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("kind", "key"), True),)


class CrmEvent(BaseModel):
    """A typed event parsed from a Kommo webhook body, stored once (dedup by fingerprint)."""

    fingerprint = peewee.CharField(unique=True)
    entity = peewee.CharField(index=True)
    action = peewee.CharField()
    kommo_id = peewee.BigIntegerField(null=True, index=True)
    account_id = peewee.BigIntegerField(null=True)
    fields = JSONField(default="{}")
    received_at = peewee.DateTimeField(default=utcnow, index=True)
    handled_at = peewee.DateTimeField(null=True)


class StatusChange(BaseModel):
    """One transition of an asset record (its text or its knowledge): the asset's history."""

    asset_id = peewee.CharField(max_length=200)
    track = peewee.CharField()  # asset | knowledge
    status = peewee.CharField()
    attempt = peewee.IntegerField(null=True)
    error_code = peewee.CharField(null=True)
    at = peewee.DateTimeField(default=utcnow)

    class Meta:
        indexes = ((("asset_id", "id"), False),)

    def to_public(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "track": self.track,
            "status": self.status,
            "attempt": self.attempt,
            "error_code": self.error_code,
        }


class DashboardUser(BaseModel):
    """A named dashboard user: an Argon2id hash of the password, never the password; viewer or operator."""

    name = peewee.CharField(primary_key=True, max_length=100)
    password_hash = peewee.TextField()
    role = peewee.CharField()  # viewer | operator
    created_at = peewee.DateTimeField(default=utcnow)


class OutboxEvent(BaseModel):
    """An outcome event for other services, written in the transaction of the status it reports.

    Delivered at least once, in order per asset (``id`` order), by the fleet's event dispatcher
    (events.py); ``state`` pending -> delivered (an operator may set it back to pending: re-send).
    """

    event_id = peewee.CharField(unique=True)
    event = (
        peewee.CharField()
    )  # asset.extracted | asset.failed | knowledge.done | knowledge.failed | ...skipped
    asset_id = peewee.CharField(max_length=200, index=True)
    status = peewee.CharField()
    error_code = peewee.CharField(null=True)
    occurred_at = peewee.DateTimeField(default=utcnow)
    state = peewee.CharField(default="pending")
    attempts = peewee.IntegerField(default=0)
    next_attempt_at = peewee.DateTimeField(null=True)
    delivered_at = peewee.DateTimeField(null=True)
    last_error = peewee.TextField(null=True)
    details = JSONField(
        null=True
    )  # keys a minor contract version added: knowledge.done's entities, relations

    class Meta:
        indexes = ((("state", "id"), False),)

    def body(self) -> dict[str, Any]:
        """The pinned JSON body (DESIGN.md, "Outcome events"), and the keys minor versions added."""
        return {
            "event_id": self.event_id,
            "event": self.event,
            "asset_id": self.asset_id,
            "status": self.status,
            "error_code": self.error_code,
            "occurred_at": iso(self.occurred_at),
            **(self.details or {}),
        }


ALL_MODELS: tuple[type[BaseModel], ...] = (
    SchemaVersion,
    Asset,
    AssetText,
    DeadLetter,
    DeadLetterTally,
    AuditEntry,
    DeletedAsset,
    LlmUsage,
    LlmChunk,
    KommoToken,
    CrmLink,
    CrmEvent,
    OutboxEvent,
    StatusChange,
    DashboardUser,
)
