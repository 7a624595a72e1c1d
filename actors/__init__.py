"""The worker's entry point for Dramatiq: ``dramatiq actors`` (or ``worker run``).

Importing this package configures logging, binds the database (running
pending migrations), builds the broker for ``BROKER_URL`` with the full
middleware stack, makes it Dramatiq's global broker, and only then imports
the domain modules: Dramatiq checks actor options when an actor is
declared, so the custom middleware must be installed first.
"""

from __future__ import annotations

import logging
import sys

import dramatiq

from brokers import build_broker
from database import DatabaseUnavailable, init_database, migrate
from logsetup import configure_logging
from middleware import build_stack
from settings import SettingsError, get_settings

try:
    settings = get_settings()
except SettingsError as exc:
    sys.stderr.write(f"worker: {exc}\n")
    raise SystemExit(2) from None

configure_logging(settings.log_level, settings.log_format)
logger = logging.getLogger("actors")

init_database(settings.database_url)
try:
    migrate()
except DatabaseUnavailable as exc:
    logger.critical("Database unavailable at start (%s); messages will wait until it is back.", exc)

broker = build_broker(settings, build_stack(settings))
dramatiq.set_broker(broker)

from actors import assets, crm, knowledge  # noqa: E402,F401 - declared after the broker on purpose

__all__ = ["broker", "settings"]
