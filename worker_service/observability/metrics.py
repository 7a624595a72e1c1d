"""The worker's Prometheus metrics, shared by middleware, clients and tools.

prometheus-client runs in multiprocess mode (``PROMETHEUS_MULTIPROC_DIR`` =
METRICS_DIR, set by ``actors`` before anything imports prometheus_client;
``worker run`` empties it at start, and the probe server marks dead pids).
The worker's own HTTP port that serves them is worker_service.runtime.probes.
Broker-level gauges (queue depth, dead letters) are served by the dashboard
only, so nothing is counted twice when several worker hosts are scraped.

=======================================================  ==========================================
worker_messages_total{actor,queue,outcome}               done, retried, dead, skipped, deferred
worker_failures_total{actor,error_code}                  failed for good, by the domain code (corrupt, timeout...)
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

import logging
import os
import time

from prometheus_client import Counter, Gauge, Histogram

logger = logging.getLogger(__name__)

MESSAGES = Counter("worker_messages_total", "Messages by outcome", ["actor", "queue", "outcome"])
FAILURES = Counter(
    "worker_failures_total",
    "Messages that failed for good, by the domain code their record got",
    ["actor", "error_code"],
)
DURATION = Histogram(
    "worker_message_duration_seconds",
    "Processing time",
    ["actor", "queue"],
    buckets=(0.005, 0.025, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900),
)
IN_PROGRESS = Gauge(
    "worker_messages_in_progress", "Messages being processed", ["actor", "queue"], multiprocess_mode="livesum"
)
KILLS = Counter("worker_hard_limit_kills_total", "Hard-limited children killed", ["reason"])
WAITS = Counter(
    "worker_ratelimit_wait_seconds_total", "Seconds spent waiting for a rate-limit slot", ["upstream"]
)
PAUSES = Counter("worker_upstream_pauses_total", "Fleet-wide upstream pauses started", ["upstream", "reason"])
REQUESTS = Counter("worker_upstream_requests_total", "Upstream HTTP answers", ["upstream", "status"])
TOKENS = Counter("worker_llm_tokens_total", "LLM tokens", ["kind"])
COST = Counter("worker_llm_cost_usd_total", "LLM cost in USD")
RSS = Gauge(
    "worker_process_rss_bytes", "Resident memory of a worker process", ["pid"], multiprocess_mode="liveall"
)
RSS_LIMIT = Gauge(
    "worker_process_rss_limit_bytes",
    "WORKER_MAX_RSS_MB of a worker process",
    ["pid"],
    multiprocess_mode="liveall",
)
RECONCILED = Counter("worker_reconciled_total", "Records repaired by the reconciler", ["track", "action"])
EVENTS = Counter("worker_events_total", "Outcome event deliveries to EVENTS_WEBHOOK_URL", ["outcome"])
HEARTBEAT = Gauge(
    "worker_heartbeat_timestamp_seconds",
    "Last maintenance round of a worker process",
    ["pid"],
    multiprocess_mode="liveall",
)


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
