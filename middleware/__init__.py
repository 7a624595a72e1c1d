"""The reliability middleware stack; actors contain business logic only.

``build_stack(settings)`` returns the middleware in the order the design
pins (before-hooks run in this order, after-hooks in reverse):

1. context (log fields,      5. status tracking, leases of running records
   trace spans)
2. metrics, throughput      6. time limit (soft; the hard limit: runtime.hardlimit)
3. validation                7. retries
4. queue pause, rate limit   8. dead letters  9. recovery (heartbeats, crash loops), liveness, reconciliation
                                (records whose message was lost), recycling, warm extraction
                                children, outcome events (when EVENTS_WEBHOOK_URL is set)
"""

from __future__ import annotations

from dramatiq.middleware import CurrentMessage, Middleware, TimeLimit

from middleware.context import LogContext
from middleware.deadletters import DeadLetters
from middleware.hardlimit import PrewarmChildren
from middleware.leases import Leases
from middleware.liveness import Liveness
from middleware.metrics import Metrics
from middleware.outcome_events import EventDelivery
from middleware.queuepause import QueuePause
from middleware.ratelimit import RateLimit
from middleware.reconciliation import Reconciliation
from middleware.recovery import Recovery
from middleware.recycling import Recycling
from middleware.retries import Retries
from middleware.status import StatusTracking
from middleware.throughput import Throughput
from middleware.tracing import Tracing
from middleware.validation import Validation
from settings import Settings
from worker_service.brokers import make_redis_client
from worker_service.ratelimit import Limit, RateLimiter


def build_stack(settings: Settings) -> list[Middleware]:
    from worker_service.observability.telemetry import tracing_enabled

    # Tracing only when OTEL_* asks for it: no-op spans still cost ~10 % of a no-op message.
    tracing: list[Middleware] = [Tracing()] if tracing_enabled() else []
    redis_client = make_redis_client(settings, settings.ratelimit_url)
    return [
        LogContext(),
        *tracing,
        Metrics(port=settings.metrics_port),
        Throughput(redis_client),  # beside Metrics: its after-hooks run after Retries concluded the outcome
        CurrentMessage(),
        Validation(),
        QueuePause(),
        RateLimit(
            RateLimiter(
                redis_client,
                {
                    # An LLM call takes seconds: waiting up to 30 s for a slot is in proportion, and spares the message
                    # a trip behind the queue (measured: 83 of 93 deliveries put back at 5 s, with 10 documents on 2 req/s).
                    "openrouter": Limit(
                        settings.openrouter_rps * settings.ratelimit_safety_factor,
                        settings.openrouter_burst,
                        max_wait_ms=30_000,
                    ),
                    "kommo": Limit(
                        settings.kommo_rps * settings.ratelimit_safety_factor, settings.kommo_burst
                    ),
                },
            )
        ),
        StatusTracking(),
        # renewed three times per grace: a slow message is never taken for a lost one
        Leases(interval_s=max(1.0, min(settings.reconcile_grace_seconds / 3, 60.0))),
        TimeLimit(time_limit=settings.assets_time_limit_seconds * 1000, interval=1000),
        Retries(
            max_attempts=settings.assets_max_attempts,
            retry_hours=settings.assets_retry_hours,
            backoff_base_ms=settings.retry_backoff_base_ms,
            backoff_max_ms=settings.retry_backoff_max_ms,
            hard_timeout_retries=settings.hard_timeout_retries,
            max_age_ms=int(settings.message_max_age_hours * 3_600_000),
        ),
        DeadLetters(),
        Recovery(interval_ms=settings.maintenance_interval_ms),
        Liveness(
            interval_ms=settings.maintenance_interval_ms,
            default_time_limit_ms=settings.assets_time_limit_seconds * 1000,
            wedge_grace_s=settings.liveness_wedge_grace_seconds,
        ),
        Reconciliation(
            redis_client,
            interval_s=settings.reconcile_interval_seconds,
            grace_s=settings.reconcile_grace_seconds,
            chunk_retention_days=settings.knowledge_cache_days,
            event_retention_days=settings.crm_events_retention_days,
            outbox_retention_days=settings.events_retention_days,
        ),
        Recycling(max_rss_mb=settings.worker_max_rss_mb, max_messages=settings.worker_max_messages),
        PrewarmChildren(queues=frozenset({"assets"}), memory_mb=settings.extract_memory_mb),
        *(
            [
                EventDelivery(
                    redis_client, url=settings.events_webhook_url, secret=settings.events_webhook_secret
                )
            ]
            if settings.events_webhook_url and settings.events_webhook_secret
            else []
        ),
    ]
