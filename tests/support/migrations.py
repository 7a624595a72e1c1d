"""The migration checks, run on SQLite by the unit tests and on PostgreSQL by the integration tests."""

from __future__ import annotations


def check_versioned_and_idempotent(url: str) -> None:
    from worker_service.database import current_version, init_database, latest_version, migrate

    init_database(url)
    first = migrate()
    assert first == list(range(1, latest_version() + 1))
    assert migrate() == []
    assert current_version() == latest_version()


def check_a_version_3_database_upgrades_keeping_its_rows(url: str) -> None:
    """A database at version 3 (before chunk checkpoints, CRM ordering and the outbox) gains them; rows stay."""
    from worker_service.database import (
        Asset,
        CrmLink,
        LlmChunk,
        OutboxEvent,
        current_version,
        database_proxy,
        init_database,
        latest_version,
        migrate,
    )
    from worker_service.database import session as db_session

    init_database(url)
    migrate()
    db = database_proxy.obj
    with db_session(transaction=True):  # back to the version-3 schema
        for table, column in (("asset", "knowledge_chunks"), ("asset", "knowledge_chunks_failed"),
                              ("llm_usage", "gen_ts"), ("llm_usage", "gen_id"), ("crm_link", "status_changed_at")):
            db.execute_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.execute_sql("DROP INDEX crm_event_received_at")
        db.execute_sql("DROP TABLE llm_chunk")
        db.execute_sql("DROP TABLE outbox_event")
        db.execute_sql("DROP TABLE status_change")
        db.execute_sql("DELETE FROM schema_version WHERE version > 3")
        db.execute_sql("INSERT INTO asset (asset_id, gen_ts, gen_id, status, attempts, no_text, knowledge_gen_ts, "
                       "knowledge_gen_id, knowledge_attempts, created_at, updated_at) VALUES ('old', 0, '', "
                       "'extracted', 1, false, 0, '', 0, '2026-11-01 00:00:00', '2026-11-01 00:00:00')")
    assert current_version() == 3
    assert migrate() == list(range(4, latest_version() + 1)) and current_version() == latest_version()
    with db_session():
        assert Asset.get_by_id("old").knowledge_chunks is None and LlmChunk.select().count() == 0
        assert OutboxEvent.select().count() == 0 and CrmLink.select(CrmLink.status_changed_at).count() == 0
    assert migrate() == []
