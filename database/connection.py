"""Connection handling for SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import parse_qs, unquote, urlsplit

import peewee

database_proxy = peewee.DatabaseProxy()
_bound_url: str | None = None
_bind_lock = threading.Lock()

SQLITE_BUSY_TIMEOUT_SECONDS = 30


class DatabaseUnavailable(Exception):
    """The database could not be reached or stayed locked; always transient."""


def _sqlite(path: str) -> peewee.SqliteDatabase:
    if path != ":memory:":
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    return peewee.SqliteDatabase(
        path,
        timeout=SQLITE_BUSY_TIMEOUT_SECONDS,
        pragmas={
            "journal_mode": "wal",
            "busy_timeout": SQLITE_BUSY_TIMEOUT_SECONDS * 1000,
            "synchronous": "normal",
            "foreign_keys": 1,
        },
    )


def _postgres(url: str) -> peewee.PostgresqlDatabase:
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    options.setdefault("connect_timeout", "5")
    return peewee.PostgresqlDatabase(
        unquote(parts.path.lstrip("/")) or "postgres",
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        **options,
    )


def make_database(url: str) -> peewee.Database:
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        # sqlite:///relative/path, sqlite:////absolute/path, sqlite:///:memory:
        return _sqlite(url[len("sqlite:///"):] or ":memory:")
    if scheme in {"postgres", "postgresql"}:
        return _postgres(url)
    raise ValueError(f"unsupported DATABASE_URL scheme {scheme!r}")


def init_database(url: str) -> peewee.Database:
    """Bind the models to the database at ``url`` (idempotent for the same URL)."""
    global _bound_url
    with _bind_lock:
        if _bound_url == url and database_proxy.obj is not None:
            return database_proxy.obj
        if database_proxy.obj is not None:
            database_proxy.obj.close()
        database_proxy.initialize(make_database(url))
        _bound_url = url
        return database_proxy.obj


def is_sqlite() -> bool:
    return isinstance(database_proxy.obj, peewee.SqliteDatabase)


@contextmanager
def session(transaction: bool = False) -> Iterator[peewee.Database]:
    """One unit of work on this thread's connection.

    A dropped connection is closed so the next unit reconnects, and the error
    surfaces as DatabaseUnavailable (transient) instead of a driver error.
    """
    db = database_proxy.obj
    if db is None:
        raise DatabaseUnavailable("database not initialised")
    try:
        db.connect(reuse_if_open=True)
        if transaction:
            # SQLite: take the write lock up front (BEGIN IMMEDIATE), waiting out the busy timeout; a deferred
            # transaction that reads and then writes fails at once with "database is locked" when another
            # process wrote in between, and SQLite never applies the busy timeout to that case.
            with db.atomic("IMMEDIATE") if isinstance(db, peewee.SqliteDatabase) else db.atomic():
                yield db
        else:
            yield db
    except (peewee.OperationalError, peewee.InterfaceError) as exc:
        try:
            db.close()
        except Exception:  # noqa: BLE001 - the connection is already broken
            pass
        raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}".strip()) from exc
