"""worker_service.database.migrations on SQLite: versioned, idempotent, and a first-round database upgrades
keeping its rows (PostgreSQL: tests/integration/test_database.py)."""

from __future__ import annotations

from tests.support.migrations import (
    check_a_version_3_database_upgrades_keeping_its_rows,
    check_versioned_and_idempotent,
)


def test_migrations_are_versioned_and_idempotent(tmp_path):
    check_versioned_and_idempotent(f"sqlite:///{tmp_path}/m.db")


def test_a_database_of_the_first_round_upgrades_through_every_later_migration_keeping_its_rows(tmp_path):
    check_a_version_3_database_upgrades_keeping_its_rows(f"sqlite:///{tmp_path}/m4.db")
