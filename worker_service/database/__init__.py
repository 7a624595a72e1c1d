"""The data layer: peewee models, connection handling and versioned migrations.

``init_database(url)`` binds the models to SQLite (WAL, busy timeout: several
worker processes on one host write at once) or PostgreSQL (required once
workers run on more than one host).  ``session()`` wraps a unit of work and
turns connection-level failures into :class:`DatabaseUnavailable`, which the
retry middleware classifies as transient.
"""

from worker_service.database.connection import (
    DatabaseUnavailable,
    database_proxy,
    init_database,
    is_sqlite,
    session,
)
from worker_service.database.migrations import (
    current_version,
    latest_version,
    migrate,
    migrate_when_available,
)
from worker_service.database.models import (
    ALL_MODELS,
    Asset,
    AssetText,
    AuditEntry,
    CrmEvent,
    CrmLink,
    DashboardUser,
    DeadLetter,
    DeadLetterTally,
    DeletedAsset,
    KommoToken,
    LlmChunk,
    LlmUsage,
    OutboxEvent,
    StatusChange,
    utcnow,
)

__all__ = [
    "ALL_MODELS",
    "Asset",
    "AssetText",
    "AuditEntry",
    "DatabaseUnavailable",
    "CrmEvent",
    "CrmLink",
    "DashboardUser",
    "DeadLetter",
    "DeadLetterTally",
    "KommoToken",
    "DeletedAsset",
    "LlmChunk",
    "LlmUsage",
    "OutboxEvent",
    "StatusChange",
    "current_version",
    "database_proxy",
    "init_database",
    "is_sqlite",
    "latest_version",
    "migrate",
    "migrate_when_available",
    "session",
    "utcnow",
]
