"""The worker's entry point for Dramatiq: ``dramatiq actors`` (or ``worker run``).

Importing this package configures logging, binds the database (running
pending migrations, or retrying them from a thread while the database is down), builds the broker for ``BROKER_URL`` with the full
middleware stack, makes it Dramatiq's global broker, and only then imports
the domain modules: Dramatiq checks actor options when an actor is
declared, so the custom middleware must be installed first.
"""

from __future__ import annotations

import logging
import os
import sys

from groups import metrics_dir
from settings import SettingsError, get_settings

try:
    settings = get_settings()
except SettingsError as exc:
    sys.stderr.write(f"worker: {exc}\n")
    raise SystemExit(2) from None

# prometheus-client reads this when it is first imported (by the middleware below): one file per process.
# Always from the settings (not setdefault): the metrics server reads the same directory, so they must agree.
_metrics_dir = metrics_dir(settings)
_metrics_dir.mkdir(parents=True, exist_ok=True)
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(_metrics_dir)

import dramatiq  # noqa: E402

from brokers import build_broker  # noqa: E402
from database import init_database, migrate_when_available  # noqa: E402
from logsetup import configure_logging  # noqa: E402
from middleware import build_stack  # noqa: E402
from telemetry import configure_telemetry  # noqa: E402

configure_logging(settings.log_level, settings.log_format)
configure_telemetry(settings)
logger = logging.getLogger("actors")

init_database(settings.database_url, statement_timeout_ms=settings.database_statement_timeout_ms)
migrate_when_available()

broker = build_broker(settings, build_stack(settings))
dramatiq.set_broker(broker)

from actors import assets, crm, knowledge  # noqa: E402,F401 - declared after the broker on purpose

__all__ = ["broker", "settings"]
