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
    from worker_service.database.graph_models import GRAPH_MODELS
    from worker_service.database.migrations import _KnowledgeEntity, _KnowledgeRelation
    from worker_service.database.models import DeletedAsset

    with db_session(transaction=True):  # back to the version-3 schema
        for table, column in (
            ("asset", "knowledge_chunks"),
            ("asset", "knowledge_chunks_failed"),
            ("llm_usage", "gen_ts"),
            ("llm_usage", "gen_id"),
            ("crm_link", "status_changed_at"),
            ("asset", "workspace"),
            ("asset", "knowledge_entities"),
            ("asset", "knowledge_relations"),
        ):
            db.execute_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
        db.drop_tables([*GRAPH_MODELS, DeletedAsset])
        db.create_tables([_KnowledgeEntity, _KnowledgeRelation])
        db.execute_sql("DROP INDEX crm_event_received_at")
        db.execute_sql("DROP TABLE llm_chunk")
        db.execute_sql("DROP TABLE outbox_event")
        db.execute_sql("DROP TABLE status_change")
        db.execute_sql("DELETE FROM schema_version WHERE version > 3")
        db.execute_sql(
            "INSERT INTO asset (asset_id, gen_ts, gen_id, status, attempts, no_text, knowledge_gen_ts, "
            "knowledge_gen_id, knowledge_attempts, created_at, updated_at) VALUES ('old', 0, '', "
            "'extracted', 1, false, 0, '', 0, '2026-11-01 00:00:00', '2026-11-01 00:00:00')"
        )
    assert current_version() == 3
    assert migrate() == list(range(4, latest_version() + 1)) and current_version() == latest_version()
    with db_session():
        assert Asset.get_by_id("old").knowledge_chunks is None and LlmChunk.select().count() == 0
        assert Asset.get_by_id("old").workspace == "default"  # every asset of old fed the one graph there was
        assert OutboxEvent.select().count() == 0 and CrmLink.select(CrmLink.status_changed_at).count() == 0
    assert migrate() == []


def insert_dead_letters(count: int) -> None:
    """``count`` dead letters m0, m1, ...: queue by i % 2, actor by i % 3 (a, b, c), error type by i % 2, one in
    ten requeued."""
    from worker_service.database import DeadLetter, session

    rows = [
        {
            "message_id": f"m{i}",
            "queue": ("assets", "crm")[i % 2],
            "actor": ("a", "b", "c")[i % 3],
            "error_type": ("crash_loop", "permanent_error")[i % 2],
            "state": "dead" if i % 10 else "requeued",
        }
        for i in range(count)
    ]
    with session(transaction=True):
        DeadLetter.insert_many(rows).execute()


def check_the_dead_letter_tally(url: str) -> None:
    """The tally (migration 12) is kept by triggers, not by the code that writes: rows written by any path (the
    sink, a bulk UPDATE, the retention purge, a DELETE or TRUNCATE by hand) are counted; a database upgraded to
    version 12 with dead letters in it gets them counted."""
    from worker_service.database import DeadLetter, database_proxy, init_database, is_sqlite, migrate, session

    init_database(url)
    migrate()
    insert_dead_letters(300)
    _tally_matches_a_full_count()
    with session(transaction=True):
        DeadLetter.update(state="requeued").where(DeadLetter.actor == "a").execute()
        DeadLetter.update(error_type="timeout").where(
            DeadLetter.message_id.in_([f"m{i}" for i in range(0, 300, 7)])
        ).execute()
        DeadLetter.update(state_changed_by="someone").execute()  # no counted column changes
        DeadLetter.delete().where(DeadLetter.queue == "crm", DeadLetter.actor == "b").execute()
        DeadLetter.create(message_id="x", queue="knowledge", actor="d", args=[], error_type="memory")
    _tally_matches_a_full_count()
    db = database_proxy.obj
    with session(transaction=True):  # back to version 11, dead letters kept: the upgrade counts them
        if is_sqlite():
            for event in ("insert", "update", "delete"):
                db.execute_sql(f"DROP TRIGGER dead_letter_tally_{event}")
        else:
            db.execute_sql("DROP FUNCTION dead_letter_tally_apply() CASCADE")
        db.execute_sql("DROP TABLE dead_letter_tally")
        db.execute_sql("DELETE FROM schema_version WHERE version = 12")  # later ones stay applied
    assert migrate() == [12]
    _tally_matches_a_full_count()
    with session(transaction=True):
        db.execute_sql("DELETE FROM dead_letter" if is_sqlite() else "TRUNCATE dead_letter")
    _tally_matches_a_full_count()


def _tally_matches_a_full_count() -> None:
    from peewee import fn

    from worker_service.database import DeadLetter, DeadLetterTally, session

    key = (DeadLetter.state, DeadLetter.queue, DeadLetter.actor, DeadLetter.error_type)
    with session():
        counted = {
            tuple(r[:4]): r[4]
            for r in DeadLetter.select(*key, fn.COUNT(DeadLetter.id)).group_by(*key).tuples()
        }
        tally = {
            tuple(r[:4]): r[4]
            for r in DeadLetterTally.select(
                DeadLetterTally.state,
                DeadLetterTally.queue,
                DeadLetterTally.actor,
                DeadLetterTally.error_type,
                DeadLetterTally.n,
            )
            .where(DeadLetterTally.n != 0)
            .tuples()
        }
    assert counted == tally, (counted, tally)
