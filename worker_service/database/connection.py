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


def _connection_errors() -> tuple[type[BaseException], ...]:
    """peewee's wrappers, and the driver's own classes peewee lets through by name (psycopg2's
    ``QueryCanceled``, raised by ``statement_timeout``, is an OperationalError peewee does not map)."""
    errors: list[type[BaseException]] = [peewee.OperationalError, peewee.InterfaceError]
    try:
        import psycopg2

        errors += [psycopg2.OperationalError, psycopg2.InterfaceError]
    except ImportError:  # pragma: no cover - psycopg2 is a dependency
        pass
    return tuple(errors)


_CONNECTION_ERRORS = _connection_errors()


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


def _postgres(url: str, statement_timeout_ms: int | None) -> peewee.PostgresqlDatabase:
    parts = urlsplit(url)
    options = {k: v[-1] for k, v in parse_qs(parts.query).items()}
    options.setdefault("connect_timeout", "5")
    if statement_timeout_ms:
        # A query stuck on a lock or a sick server ends as DatabaseUnavailable (retried, no attempt spent)
        # instead of holding a worker thread forever.
        options["options"] = (
            f"{options.get('options', '')} -c statement_timeout={int(statement_timeout_ms)}".strip()
        )
    return peewee.PostgresqlDatabase(
        unquote(parts.path.lstrip("/")) or "postgres",
        user=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        host=parts.hostname or "127.0.0.1",
        port=parts.port or 5432,
        **options,
    )


def make_database(url: str, *, statement_timeout_ms: int | None = None) -> peewee.Database:
    """A database for ``url``; ``statement_timeout_ms`` applies to PostgreSQL sessions (None or 0: none)."""
    scheme = urlsplit(url).scheme
    if scheme == "sqlite":
        # sqlite:///relative/path, sqlite:////absolute/path, sqlite:///:memory:
        return _sqlite(url[len("sqlite:///") :] or ":memory:")
    if scheme in {"postgres", "postgresql"}:
        return _postgres(url, statement_timeout_ms)
    raise ValueError(f"unsupported DATABASE_URL scheme {scheme!r}")


def init_database(url: str, *, statement_timeout_ms: int | None = None) -> peewee.Database:
    """Bind the models to the database at ``url`` (idempotent for the same URL and timeout).

    The service passes DATABASE_STATEMENT_TIMEOUT_MS from settings; None (tests, tools) sets none.
    """
    global _bound_url
    key = f"{url}#{statement_timeout_ms or 0}"
    with _bind_lock:
        if _bound_url == key and database_proxy.obj is not None:
            return database_proxy.obj
        if database_proxy.obj is not None:
            database_proxy.obj.close()
        database_proxy.initialize(make_database(url, statement_timeout_ms=statement_timeout_ms))
        _bound_url = key
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
    except _CONNECTION_ERRORS as exc:
        try:
            db.close()
        except Exception:  # noqa: BLE001 - the connection is already broken
            pass
        raise DatabaseUnavailable(f"{type(exc).__name__}: {exc}".strip()) from exc
    except peewee.ProgrammingError as exc:
        if not _missing_table(exc):
            raise
        # The schema is not there yet (a worker that started during an outage migrates when it can):
        # an infrastructure state like an outage, not a fault of the message being processed.
        raise DatabaseUnavailable(f"schema not migrated yet: {exc}".strip()) from exc


def _missing_table(exc: BaseException) -> bool:
    """PostgreSQL's undefined_table (42P01; SQLite says "no such table" as an OperationalError)."""
    driver_errors = [exc.__context__, *exc.args[:1]]  # peewee re-raises the driver's error wrapped
    return any(getattr(e, "pgcode", None) == "42P01" for e in driver_errors)
