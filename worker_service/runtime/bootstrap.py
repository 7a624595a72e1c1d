"""The one call that turns a Python process into a configured worker (``actors/__init__`` makes it).

``bootstrap_worker()`` reads the settings (a bad one exits with status 2 and the reason), points
prometheus-client at this worker group's metrics directory, configures logging and telemetry, binds the
database (running pending migrations, or retrying them from a thread while the database is down), builds
the broker for ``BROKER_URL`` with the full middleware stack and makes it Dramatiq's global broker.

It must run before any actor is declared (Dramatiq checks actor options against the installed middleware)
and before anything imports prometheus-client (which reads ``PROMETHEUS_MULTIPROC_DIR`` when first
imported): that is why the imports below sit inside the function. This module and
``worker_service.cli`` are the only places outside ``actors`` allowed to import ``middleware``.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

from settings import SettingsError, get_settings

if TYPE_CHECKING:
    import dramatiq


def bootstrap_worker() -> dramatiq.Broker:
    """Configure this process as a worker and return the broker it installed."""
    try:
        settings = get_settings()
    except SettingsError as exc:
        sys.stderr.write(f"worker: {exc}\n")
        raise SystemExit(2) from None

    from worker_service.runtime.worker_groups import metrics_dir

    # Always from the settings (not setdefault): the metrics server reads the same directory, so they must agree.
    directory = metrics_dir(settings)
    directory.mkdir(parents=True, exist_ok=True)
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)

    import dramatiq

    from middleware import build_stack
    from worker_service.brokers import build_broker
    from worker_service.database import init_database, migrate_when_available
    from worker_service.observability.logs import configure_logging
    from worker_service.observability.telemetry import configure_telemetry

    configure_logging(settings.log_level, settings.log_format)
    configure_telemetry(settings)
    init_database(settings.database_url, statement_timeout_ms=settings.database_statement_timeout_ms)
    migrate_when_available()
    broker = build_broker(settings, build_stack(settings))
    dramatiq.set_broker(broker)
    return broker
