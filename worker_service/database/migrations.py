"""Versioned, idempotent schema migrations (``worker migrate``; also run at worker start).

Each migration runs once, inside one transaction that also records its
version, under a lock (PostgreSQL advisory lock, SQLite ``BEGIN IMMEDIATE``)
so several processes starting together apply it exactly once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import peewee

from worker_service.database.connection import DatabaseUnavailable, database_proxy, is_sqlite, session
from worker_service.database.graph_models import GRAPH_MODELS
from worker_service.database.models import (
    Asset,
    AssetText,
    AuditEntry,
    BaseModel,
    CrmEvent,
    CrmLink,
    DashboardUser,
    DeadLetter,
    DeadLetterTally,
    DeletedAsset,
    JSONField,
    KommoToken,
    LlmChunk,
    LlmUsage,
    OutboxEvent,
    SchemaVersion,
    StatusChange,
)

logger = logging.getLogger(__name__)


class _KnowledgeEntity(BaseModel):
    """Retired in migration 13 (the workspace graph of mentions replaced the per-asset graph): kept here only so
    that migrations 2 and 9 still build a database of their version."""

    asset = peewee.ForeignKeyField(Asset, on_delete="CASCADE", column_name="asset_id", index=True)
    key = peewee.CharField()
    name = peewee.TextField()
    type = peewee.CharField()
    descriptions = JSONField(default="[]")
    mentions = peewee.IntegerField(default=1)
    pages = JSONField(default="[]")  # pages (sheets, slides) of the chunks it came from

    class Meta:
        table_name = "knowledge_entity"
        indexes = ((("asset", "key"), True),)


class _KnowledgeRelation(BaseModel):
    """Retired in migration 13, with _KnowledgeEntity."""

    asset = peewee.ForeignKeyField(Asset, on_delete="CASCADE", column_name="asset_id", index=True)
    source = peewee.TextField()
    target = peewee.TextField()
    type = peewee.CharField()
    descriptions = JSONField(default="[]")
    weight = peewee.FloatField(default=1.0)
    pages = JSONField(default="[]")

    class Meta:
        table_name = "knowledge_relation"


_ADVISORY_LOCK_KEY = 0x57_4B_52_4D  # "WKRM"


def _v1_base(db: peewee.Database) -> None:
    db.create_tables([Asset, AssetText, DeadLetter, AuditEntry], safe=True)


def _v2_knowledge(db: peewee.Database) -> None:
    db.create_tables([_KnowledgeEntity, _KnowledgeRelation, LlmUsage], safe=True)


def _v3_crm(db: peewee.Database) -> None:
    db.create_tables([KommoToken, CrmLink, CrmEvent], safe=True)


def _add_missing_columns(db: peewee.Database, model: type[peewee.Model], names: list[str]) -> None:
    """Add ``names`` of ``model`` that the table lacks (a database created after the model changed has them)."""
    from playhouse.migrate import SchemaMigrator
    from playhouse.migrate import migrate as apply

    table = model._meta.table_name
    # PostgreSQL: the schema the connection works in (peewee looks in "public" unless told)
    schema = None if is_sqlite() else db.execute_sql("SELECT current_schema()").fetchone()[0]
    existing = {column.name for column in db.get_columns(table, schema=schema)}
    migrator = SchemaMigrator.from_database(db)
    apply(
        *(
            migrator.add_column(table, model._meta.fields[name].column_name, model._meta.fields[name])
            for name in names
            if model._meta.fields[name].column_name not in existing
        )
    )


def _v4_llm_checkpoints(db: peewee.Database) -> None:
    db.create_tables([LlmChunk], safe=True)
    _add_missing_columns(db, Asset, ["knowledge_chunks", "knowledge_chunks_failed"])
    _add_missing_columns(db, LlmUsage, ["gen_ts", "gen_id"])


def _v5_crm_ordering(db: peewee.Database) -> None:
    _add_missing_columns(db, CrmLink, ["status_changed_at"])
    # the name peewee gives the index of a fresh database (received_at has index=True): created once either way
    db.execute_sql("CREATE INDEX IF NOT EXISTS crm_event_received_at ON crm_event (received_at)")


def _v6_outbox(db: peewee.Database) -> None:
    db.create_tables([OutboxEvent], safe=True)


def _v7_history(db: peewee.Database) -> None:
    db.create_tables([StatusChange], safe=True)


def _v8_users(db: peewee.Database) -> None:
    db.create_tables([DashboardUser], safe=True)


def _v9_documents(db: peewee.Database) -> None:
    _add_missing_columns(db, Asset, ["ocr_pages", "ocr_languages", "no_text_reason"])
    _add_missing_columns(db, _KnowledgeEntity, ["pages"])
    _add_missing_columns(db, _KnowledgeRelation, ["pages"])


def _create_indexes(db: peewee.Database, table: str, *indexes: tuple[str, ...]) -> None:
    """Each index on ``table`` unless there: named as peewee names those of a fresh database (model Meta)."""
    for columns in indexes:
        db.execute_sql(
            f"CREATE INDEX IF NOT EXISTS {table}_{'_'.join(columns)} ON {table} ({', '.join(columns)})"
        )


def _v10_leases(db: peewee.Database) -> None:
    _add_missing_columns(db, Asset, ["lease_at", "knowledge_lease_at"])
    _create_indexes(db, "asset", ("lease_at",), ("knowledge_lease_at",))
    # the records under way get a lease from their last change; finished ones have none
    db.execute_sql(
        "UPDATE asset SET lease_at = updated_at WHERE status IN ('received', 'processing', 'retrying')"
    )
    db.execute_sql(
        "UPDATE asset SET lease_at = NULL WHERE status NOT IN ('received', 'processing', 'retrying')"
    )
    db.execute_sql(
        "UPDATE asset SET knowledge_lease_at = updated_at "
        "WHERE knowledge_status IN ('pending', 'processing', 'retrying')"
    )


def _v11_dead_letter_pages(db: peewee.Database) -> None:
    _create_indexes(
        db,
        "dead_letter",
        ("state", "id"),
        ("state", "error_type", "id"),
        ("state", "actor", "id"),
        ("state", "queue", "id"),
    )


_TALLY_KEY = "state, queue, actor, error_type"
# PostgreSQL: one statement-level trigger per event, reading its transition tables, so a bulk requeue or
# delete of 10^5 rows changes each tally row once; tally rows are updated in key order (no deadlock between
# two bulk statements).  TRUNCATE empties the tally.
_PG_TALLY = f"""
CREATE OR REPLACE FUNCTION dead_letter_tally_apply() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE change record;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        DELETE FROM dead_letter_tally;
        RETURN NULL;
    END IF;
    FOR change IN EXECUTE
        'SELECT {_TALLY_KEY}, sum(d) AS d FROM (' || CASE TG_OP
            WHEN 'INSERT' THEN 'SELECT {_TALLY_KEY}, 1 AS d FROM new_rows'
            WHEN 'DELETE' THEN 'SELECT {_TALLY_KEY}, -1 AS d FROM old_rows'
            ELSE 'SELECT {_TALLY_KEY}, 1 AS d FROM new_rows UNION ALL SELECT {_TALLY_KEY}, -1 FROM old_rows'
        END || ') AS c GROUP BY {_TALLY_KEY} HAVING sum(d) <> 0 ORDER BY {_TALLY_KEY}'
    LOOP
        INSERT INTO dead_letter_tally ({_TALLY_KEY}, n)
        VALUES (change.state, change.queue, change.actor, change.error_type, change.d)
        ON CONFLICT ({_TALLY_KEY}) DO UPDATE SET n = dead_letter_tally.n + EXCLUDED.n;
    END LOOP;
    RETURN NULL;
END $$;
DROP TRIGGER IF EXISTS dead_letter_tally_insert ON dead_letter;
DROP TRIGGER IF EXISTS dead_letter_tally_update ON dead_letter;
DROP TRIGGER IF EXISTS dead_letter_tally_delete ON dead_letter;
DROP TRIGGER IF EXISTS dead_letter_tally_truncate ON dead_letter;
CREATE TRIGGER dead_letter_tally_insert AFTER INSERT ON dead_letter REFERENCING NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dead_letter_tally_apply();
CREATE TRIGGER dead_letter_tally_update AFTER UPDATE ON dead_letter
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows FOR EACH STATEMENT EXECUTE FUNCTION dead_letter_tally_apply();
CREATE TRIGGER dead_letter_tally_delete AFTER DELETE ON dead_letter REFERENCING OLD TABLE AS old_rows
    FOR EACH STATEMENT EXECUTE FUNCTION dead_letter_tally_apply();
CREATE TRIGGER dead_letter_tally_truncate AFTER TRUNCATE ON dead_letter
    FOR EACH STATEMENT EXECUTE FUNCTION dead_letter_tally_apply();
"""
# SQLite has row triggers only (its dead letters are a development database's few).
_SQLITE_TALLY = [
    f"""CREATE TRIGGER IF NOT EXISTS dead_letter_tally_insert AFTER INSERT ON dead_letter BEGIN
        INSERT INTO dead_letter_tally ({_TALLY_KEY}, n) VALUES (NEW.state, NEW.queue, NEW.actor, NEW.error_type, 1)
        ON CONFLICT ({_TALLY_KEY}) DO UPDATE SET n = n + 1; END""",
    f"""CREATE TRIGGER IF NOT EXISTS dead_letter_tally_update AFTER UPDATE OF {_TALLY_KEY} ON dead_letter BEGIN
        UPDATE dead_letter_tally SET n = n - 1 WHERE state = OLD.state AND queue = OLD.queue AND actor = OLD.actor
            AND error_type = OLD.error_type;
        INSERT INTO dead_letter_tally ({_TALLY_KEY}, n) VALUES (NEW.state, NEW.queue, NEW.actor, NEW.error_type, 1)
        ON CONFLICT ({_TALLY_KEY}) DO UPDATE SET n = n + 1; END""",
    """CREATE TRIGGER IF NOT EXISTS dead_letter_tally_delete AFTER DELETE ON dead_letter BEGIN
        UPDATE dead_letter_tally SET n = n - 1 WHERE state = OLD.state AND queue = OLD.queue AND actor = OLD.actor
            AND error_type = OLD.error_type; END""",
]


def _v12_dead_letter_tally(db: peewee.Database) -> None:
    db.create_tables([DeadLetterTally], safe=True)
    if is_sqlite():
        for statement in _SQLITE_TALLY:
            db.execute_sql(statement)
    else:
        db.execute_sql(
            "LOCK TABLE dead_letter IN SHARE MODE"
        )  # no dead letter changes between count and triggers
        db.execute_sql(_PG_TALLY)
    db.execute_sql("DELETE FROM dead_letter_tally")
    db.execute_sql(
        f"INSERT INTO dead_letter_tally ({_TALLY_KEY}, n) SELECT {_TALLY_KEY}, count(*) FROM dead_letter "
        f"GROUP BY {_TALLY_KEY}"
    )


def _v13_workspace_graph(db: peewee.Database) -> None:
    _add_missing_columns(db, Asset, ["workspace", "knowledge_entities", "knowledge_relations"])
    _add_missing_columns(db, OutboxEvent, ["details"])
    db.create_tables([*GRAPH_MODELS, DeletedAsset], safe=True)
    # the per-asset graphs give way to the workspace graph of mentions: `worker graph rebuild` derives every
    # asset's mentions again from the stored chunk results (llm_chunk), with no LLM call
    db.drop_tables([_KnowledgeRelation, _KnowledgeEntity], safe=True)


def _v14_operator_pages(db: peewee.Database) -> None:
    _create_indexes(
        db,
        "asset",
        ("created_at", "asset_id"),
        ("status", "created_at", "asset_id"),
        ("knowledge_status", "created_at", "asset_id"),
    )
    _add_missing_columns(db, Asset, ["parts_skipped", "ocr_low_confidence_pages", "progress"])
    _add_missing_columns(db, DeadLetter, ["error_code", "asset_id"])
    _create_indexes(db, "dead_letter", ("state", "error_code", "id"), ("asset_id", "id"))
    # the asset each older dead letter names, read from its kwargs (its domain code was never stored: NULL, shown
    # as its error type)
    last = 0
    while True:
        rows = list(
            DeadLetter.select(DeadLetter.id, DeadLetter.kwargs)
            .where(DeadLetter.id > last, DeadLetter.kwargs.contains('"asset_id"'))
            .order_by(DeadLetter.id)
            .limit(1000)
        )
        if not rows:
            return
        for row in rows:
            asset_id = (row.kwargs or {}).get("asset_id") if isinstance(row.kwargs, dict) else None
            if isinstance(asset_id, str) and 0 < len(asset_id) <= 200:
                DeadLetter.update(asset_id=asset_id).where(DeadLetter.id == row.id).execute()
        last = rows[-1].id


MIGRATIONS: list[tuple[int, str, Callable[[peewee.Database], None]]] = [
    (1, "base: assets, asset texts, dead letters, audit log", _v1_base),
    (2, "knowledge graph entities, relations, LLM usage", _v2_knowledge),
    (3, "CRM: Kommo OAuth token, ledger of links, webhook events", _v3_crm),
    (
        4,
        "LLM chunk checkpoints and cache; chunk counts of a graph; usage per knowledge generation",
        _v4_llm_checkpoints,
    ),
    (
        5,
        "CRM: Kommo's time of the lead status in the ledger; webhook events by age (retention)",
        _v5_crm_ordering,
    ),
    (6, "outbox of outcome events for other services", _v6_outbox),
    (7, "status history of assets and their knowledge", _v7_history),
    (8, "named dashboard users with roles", _v8_users),
    (
        9,
        "assets: pages read by OCR, its languages, why a document has no text; the pages of graph entities and "
        "relations",
        _v9_documents,
    ),
    (10, "leases of the records under way (reconciliation without a queue scan)", _v10_leases),
    (
        11,
        "dead letters: an index per page of the list (state, then the filtered column, then id)",
        _v11_dead_letter_pages,
    ),
    (
        12,
        "dead letters: a tally per state, queue, actor and error type, kept by triggers (exact counts at any size)",
        _v12_dead_letter_tally,
    ),
    (
        13,
        "one knowledge graph per workspace: mentions, aliases, entities, relation mentions, curation decisions; "
        "assets' workspace; tombstones of deleted assets; the per-asset graph tables dropped",
        _v13_workspace_graph,
    ),
    (
        14,
        "operator pages: assets newest first by state; dead letters' asset and the domain code its record got; "
        "the parts of a document that could not be read; the pages whose OCR stayed doubtful; progress",
        _v14_operator_pages,
    ),
]


def latest_version() -> int:
    return MIGRATIONS[-1][0]


def current_version() -> int:
    with session() as db:
        schema = None if is_sqlite() else db.execute_sql("SELECT current_schema()").fetchone()[0]
        if not db.table_exists(SchemaVersion._meta.table_name, schema=schema):
            return 0
        return SchemaVersion.select(peewee.fn.MAX(SchemaVersion.version)).scalar() or 0


def migrate() -> list[int]:
    """Apply pending migrations; returns the versions applied by this call."""
    applied: list[int] = []
    with session() as db:
        db.create_tables([SchemaVersion], safe=True)
    for version, name, apply in MIGRATIONS:
        with session() as db:
            lock = db.atomic("IMMEDIATE") if is_sqlite() else db.atomic()
            with lock:
                if not is_sqlite():
                    db.execute_sql("SELECT pg_advisory_xact_lock(%s)", (_ADVISORY_LOCK_KEY,))
                if SchemaVersion.get_or_none(SchemaVersion.version == version):
                    continue
                apply(db)
                SchemaVersion.create(version=version, name=name)
                applied.append(version)
                logger.info("applied migration %d: %s", version, name)
    return applied


MIGRATE_RETRY_SECONDS = 5.0


def migrate_when_available(retry_s: float = MIGRATE_RETRY_SECONDS) -> threading.Thread | None:
    """Apply pending migrations now, or keep trying from a thread until the database takes them.

    A worker that starts during a database outage must not run for good on a schema it never
    migrated: until the tables exist, queries fail as DatabaseUnavailable and messages wait.
    Returns the retrying thread, or None when the migrations are done already.
    """
    try:
        migrate()
        return None
    except DatabaseUnavailable as exc:
        logger.warning(
            "Database unavailable at start (%s); migrating as soon as it is back, messages wait.", exc
        )

    def retry() -> None:
        stop = threading.Event()  # never set: the thread ends once the migrations are in
        while not stop.wait(retry_s):
            try:
                migrate()
            except DatabaseUnavailable:
                continue
            logger.info("Database back: migrations applied.")
            return

    thread = threading.Thread(target=retry, name="worker-migrate", daemon=True)
    thread.start()
    return thread


__all__ = [
    "MIGRATIONS",
    "current_version",
    "database_proxy",
    "latest_version",
    "migrate",
    "migrate_when_available",
]
