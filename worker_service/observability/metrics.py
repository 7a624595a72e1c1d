"""The worker's Prometheus metrics and its own HTTP port (probes), shared by middleware, clients and tools.

prometheus-client runs in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` =
METRICS_DIR, set by ``actors`` before anything imports prometheus_client;
``worker run`` empties it at start, and the server marks dead pids).
:func:`serve` (a Dramatiq fork, see middleware.metrics) answers on
METRICS_PORT: ``/metrics``; ``/healthz``, whether every live worker process
recorded its liveness heartbeat within 3 maintenance intervals
(middleware.liveness decides when it may); ``/readyz``, broker and database
reachable, migrations current.  Broker-level gauges (queue depth, dead
letters) are served by the dashboard only, so nothing is counted twice when
several worker hosts are scraped.

=======================================================  ==========================================
worker_messages_total{actor,queue,outcome}               done, retried, dead, skipped, deferred
worker_message_duration_seconds{actor,queue}             histogram
worker_messages_in_progress{actor,queue}                 gauge (sum over processes)
worker_hard_limit_kills_total{reason}                    timeout, memory
worker_ratelimit_wait_seconds_total{upstream}            time spent waiting for a slot
worker_upstream_pauses_total{upstream,reason}            429, 402, 403 pauses started
worker_upstream_requests_total{upstream,status}          HTTP answers per upstream
worker_llm_tokens_total{kind}, worker_llm_cost_usd_total  prompt/completion tokens, USD
worker_process_rss_bytes{pid}                            per worker process
worker_process_rss_limit_bytes{pid}                      its recycling cap
worker_heartbeat_timestamp_seconds{pid}                  last liveness check passed, per process
worker_reconciled_total{track,action}                    records whose message was lost: requeued, failed
=======================================================  ==========================================
"""

from __future__ import annotations

import faulthandler
import logging
import os
import signal
import sys
import time
from typing import Any

from prometheus_client import Counter, Gauge, Histogram

logger = logging.getLogger(__name__)

MESSAGES = Counter("worker_messages_total", "Messages by outcome", ["actor", "queue", "outcome"])
DURATION = Histogram("worker_message_duration_seconds", "Processing time", ["actor", "queue"],
                     buckets=(0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900))
IN_PROGRESS = Gauge("worker_messages_in_progress", "Messages being processed", ["actor", "queue"],
                    multiprocess_mode="livesum")
KILLS = Counter("worker_hard_limit_kills_total", "Hard-limited children killed", ["reason"])
WAITS = Counter("worker_ratelimit_wait_seconds_total", "Seconds spent waiting for a rate-limit slot", ["upstream"])
PAUSES = Counter("worker_upstream_pauses_total", "Fleet-wide upstream pauses started", ["upstream", "reason"])
REQUESTS = Counter("worker_upstream_requests_total", "Upstream HTTP answers", ["upstream", "status"])
TOKENS = Counter("worker_llm_tokens_total", "LLM tokens", ["kind"])
COST = Counter("worker_llm_cost_usd_total", "LLM cost in USD")
RSS = Gauge("worker_process_rss_bytes", "Resident memory of a worker process", ["pid"], multiprocess_mode="liveall")
RSS_LIMIT = Gauge("worker_process_rss_limit_bytes", "WORKER_MAX_RSS_MB of a worker process", ["pid"],
                  multiprocess_mode="liveall")
RECONCILED = Counter("worker_reconciled_total", "Records repaired by the reconciler", ["track", "action"])
EVENTS = Counter("worker_events_total", "Outcome event deliveries to EVENTS_WEBHOOK_URL", ["outcome"])
HEARTBEAT = Gauge("worker_heartbeat_timestamp_seconds", "Last maintenance round of a worker process", ["pid"],
                  multiprocess_mode="liveall")


def rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:
        return 0


def record_heartbeat() -> None:
    pid = str(os.getpid())
    HEARTBEAT.labels(pid).set(time.time())
    RSS.labels(pid).set(rss_bytes())


def serve() -> int:
    """The worker's HTTP port (run as a Dramatiq fork): /metrics, /healthz, /readyz."""
    import json
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

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
        server = ThreadingHTTPServer(("0.0.0.0", settings.metrics_port), Handler)  # noqa: S104 - probes come from outside
    except OSError as exc:
        # Exiting would make Dramatiq's master stop every worker process; keep the workers, lose the port.
        logger.critical("cannot serve metrics/health on :%d (%s); probes will fail", settings.metrics_port, exc)
        while True:
            time.sleep(3600)
    logger.info("worker metrics and health on :%d", settings.metrics_port)
    server.serve_forever()
    return 0
