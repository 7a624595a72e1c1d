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

import importlib.util
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dramatiq

#: the top-level names the design card pins beside this package; they must come from where it comes from
PINNED_TOP_LEVEL = ("settings", "middleware", "actors")


def shadowed_modules() -> list[str]:
    """Pinned top-level modules that would be loaded from somewhere other than this installation (Dramatiq's CLI
    puts the current directory first on sys.path: a ``settings.py`` of a Django project there would win)."""
    home = Path(__file__).resolve().parents[2]
    found = []
    for name in PINNED_TOP_LEVEL:
        module = sys.modules.get(name)
        origin = (
            getattr(module, "__file__", None)
            if module
            else getattr(importlib.util.find_spec(name), "origin", None)
        )
        if origin is None:
            continue
        path = Path(origin).resolve()
        where = path.parent.parent if path.name == "__init__.py" else path.parent
        if where != home:
            found.append(f"{name} ({path})")
    return found


def bootstrap_worker() -> dramatiq.Broker:
    """Configure this process as a worker and return the broker it installed."""
    shadowed = shadowed_modules()
    if shadowed:
        sys.stderr.write(
            f"worker: refusing to start: {', '.join(shadowed)} shadows the worker's own module; "
            "start the worker from another directory\n"
        )
        raise SystemExit(2)
    from settings import SettingsError, get_settings, mask_url

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

    configure_logging(
        settings.log_level,
        settings.log_format,
        secrets=settings.secret_values(),
        broker_url=mask_url(settings.broker_url),
    )
    configure_telemetry(settings)
    init_database(settings.database_url, statement_timeout_ms=settings.database_statement_timeout_ms)
    migrate_when_available()
    broker = build_broker(settings, build_stack(settings))
    dramatiq.set_broker(broker)
    return broker
