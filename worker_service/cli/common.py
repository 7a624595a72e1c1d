"""What every command shares: output lines, settings, database and logging set-up, who the operator is."""

from __future__ import annotations

import getpass
import socket
import sys

from settings import Settings, get_settings, mask_url


def out(text: str = "") -> None:
    sys.stdout.write(text + "\n")


def err(text: str) -> None:
    sys.stderr.write(text + "\n")


def settings() -> Settings:
    return get_settings()


def init(settings: Settings, *, migrate: bool = True) -> None:
    from worker_service.database import init_database
    from worker_service.database import migrate as run_migrations
    from worker_service.observability.logs import configure_logging

    configure_logging(
        settings.log_level,
        settings.log_format,
        secrets=settings.secret_values(),
        broker_url=mask_url(settings.broker_url),
    )
    init_database(settings.database_url, statement_timeout_ms=settings.database_statement_timeout_ms)
    if migrate:
        run_migrations()


def operator() -> str:
    try:
        user = getpass.getuser()
    except Exception:  # noqa: BLE001
        user = "unknown"
    return f"cli:{user}@{socket.gethostname()}"
