"""The worker's own HTTP port (a Dramatiq fork, see middleware.metrics): ``/metrics``, ``/healthz``, ``/readyz``.

``/metrics``: every worker process's metrics (prometheus-client multiprocess mode, dead pids marked);
``/healthz``: whether every live worker process recorded its liveness heartbeat within 3 maintenance
intervals (middleware.liveness decides when it may); ``/readyz``: broker and database reachable, migrations
current (observability.health).

It binds METRICS_HOST (127.0.0.1 by default: in a pod, set 0.0.0.0 so the kubelet and Prometheus reach it, as
deploy/ does).  A connection that sends nothing for ``IDLE_TIMEOUT_S`` is closed, and at most
``MAX_CONNECTIONS`` are served at once (one thread each): past that a connection is closed at once, so a
flood of idle sockets can neither grow threads without bound nor keep the port from answering later.
"""

from __future__ import annotations

import faulthandler
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

logger = logging.getLogger(__name__)
IDLE_TIMEOUT_S = 5.0
MAX_CONNECTIONS = 32


class BoundedServer(ThreadingHTTPServer):
    """One thread per connection, at most ``MAX_CONNECTIONS`` at once; the rest are closed unanswered."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(address, handler)
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


def serve() -> int:
    """Serve the probes until the worker's main process ends (this process dies with it)."""
    from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess

    from settings import get_settings
    from worker_service.database import init_database
    from worker_service.observability.health import HealthChecks
    from worker_service.runtime.supervision import die_with_parent
    from worker_service.runtime.worker_groups import metrics_dir

    die_with_parent(signal.SIGTERM)  # Dramatiq's fork processes do not outlive their main process either
    faulthandler.register(signal.SIGUSR1, file=sys.__stderr__ or sys.stderr, all_threads=True)
    settings = get_settings()
    init_database(settings.database_url, statement_timeout_ms=settings.database_statement_timeout_ms)
    checks = HealthChecks(settings)
    directory = str(metrics_dir(settings))
    stale_after = 3 * settings.maintenance_interval_ms / 1000 + 5

    def live_pids() -> set[str]:
        pids = set()
        for name in os.listdir(directory):
            parts = name.rsplit("_", 1)
            if len(parts) == 2 and parts[1].removesuffix(".db").isdigit():
                pids.add(parts[1].removesuffix(".db"))
        alive = set()
        for pid in pids:
            if os.path.exists(f"/proc/{pid}"):
                alive.add(pid)
            else:
                multiprocess.mark_process_dead(int(pid), directory)
        return alive

    def health() -> tuple[bool, dict[str, Any]]:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, directory)
        beats = {}
        for metric in registry.collect():
            if metric.name == "worker_heartbeat_timestamp_seconds":
                beats = {s.labels["pid"]: s.value for s in metric.samples}
        alive = live_pids()
        now = time.time()
        fresh = {pid: round(now - beats[pid], 1) for pid in alive if pid in beats}
        ok = bool(fresh) and all(age < stale_after for age in fresh.values())
        return ok, {"alive": ok, "heartbeat_age_seconds": fresh}

    class Handler(BaseHTTPRequestHandler):
        timeout = IDLE_TIMEOUT_S  # the socket's: a client that sends nothing is dropped, its thread freed

        def do_GET(self) -> None:  # noqa: N802
            if self.path == "/metrics":
                live_pids()
                registry = CollectorRegistry()
                multiprocess.MultiProcessCollector(registry, directory)
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif self.path == "/healthz":
                ok, body = health()
                self._send(200 if ok else 503, json.dumps(body).encode(), "application/json")
            elif self.path == "/readyz":
                ready = checks.ready()
                self._send(200 if ready["ready"] else 503, json.dumps(ready).encode(), "application/json")
            else:
                self._send(404, b"not found", "text/plain")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return None

    try:
        BoundedServer.address_family = socket.AF_INET6 if ":" in settings.metrics_host else socket.AF_INET
        server = BoundedServer((settings.metrics_host, settings.metrics_port), Handler)
    except OSError as exc:
        # Exiting would make Dramatiq's master stop every worker process; keep the workers, lose the port.
        logger.critical(
            "cannot serve metrics/health on %s:%d (%s); probes will fail",
            settings.metrics_host,
            settings.metrics_port,
            exc,
        )
        while True:
            time.sleep(3600)
    logger.info("worker metrics and health on %s:%d", settings.metrics_host, settings.metrics_port)
    server.serve_forever()
    return 0
