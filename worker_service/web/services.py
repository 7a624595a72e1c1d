"""What the dashboard's views talk to: the broker, the dead-letter store, the checks and the rate limiter's Redis."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from typing import Any

import dramatiq

from worker_service.deadletters import DeadLetterStore
from worker_service.observability.health import HealthChecks
from worker_service.web.auth import Authenticator
from worker_service.web.throttle import Throttle

WSGIApp = Callable[[dict, Callable], Iterable[bytes]]
REVOKED_SESSIONS = "dramatiq:__web_revoked__"  # session id -> when its cookie would have expired


class Services:
    """Parameters:
    broker: where requeued messages go (and what /queues/ shows).
    auth: an Authenticator, or None for --insecure-local (127.0.0.1 only; every action is by ``local``).
    health: the /healthz and /readyz checks; metrics_app: a WSGI app for /metrics.
    limiter_client: the rate limiter's Redis (sessions revoked, login throttle, pauses); None: made on use.
    """

    def __init__(
        self,
        *,
        broker: dramatiq.Broker,
        auth: Authenticator | None,
        health: HealthChecks,
        metrics_app: WSGIApp | None = None,
        limiter_client: Any = None,
    ) -> None:
        self.broker = broker
        self.store = DeadLetterStore(broker)
        self.auth = auth
        self.health = health
        self.metrics_app = metrics_app
        # made on first use when not given: a dashboard may start before the limiter's Redis
        self._limiter_client: Any = limiter_client

    @property
    def limiter_client(self) -> Any:
        """The rate limiter's Redis (upstream pauses, rate used, spend, per-minute counts)."""
        if self._limiter_client is None:
            from settings import get_settings
            from worker_service.brokers import make_redis_client

            settings = get_settings()
            self._limiter_client = make_redis_client(settings, settings.ratelimit_url)
        return self._limiter_client

    @property
    def throttle(self) -> Throttle:
        """Failed logins and wrong bearer tokens, counted fleet-wide (web.throttle)."""
        return Throttle(self.limiter_client)

    def revoke_session(self, session_id: str, lifetime_s: int) -> None:
        """Logging out ends the session on every replica, even for a copy of its cookie kept elsewhere."""
        now = time.time()
        pipe = self.limiter_client.pipeline(transaction=False)
        pipe.zremrangebyscore(REVOKED_SESSIONS, "-inf", now)  # those whose cookies have expired anyway
        pipe.zadd(REVOKED_SESSIONS, {session_id: now + lifetime_s})
        pipe.expire(REVOKED_SESSIONS, lifetime_s)
        pipe.execute()

    def session_revoked(self, session_id: str) -> bool:
        return self.limiter_client.zscore(REVOKED_SESSIONS, session_id) is not None

    def pausable_broker(self, queue: str) -> Any:
        """The broker, if it can pause ``queue`` (Redis; RabbitMQ with its control Redis) and knows it; else None."""
        from worker_contracts import CONTRACTS

        from worker_service.brokers.rabbitmq import ReliableRabbitmqBroker

        broker = self.broker
        if isinstance(broker, ReliableRabbitmqBroker):
            known = {q for q, _ in CONTRACTS.values()} | broker.registered_queues()
            return broker if broker.pauses is not None and queue in known else None
        return self.redis_broker(queue)

    def redis_broker(self, queue: str) -> Any:
        """The Redis broker, if ``queue`` is one the contracts or a worker of the fleet declared; else None."""
        from worker_contracts import CONTRACTS

        from worker_service.brokers.redis import ReliableRedisBroker

        broker = self.broker
        if not isinstance(broker, ReliableRedisBroker):
            return None
        registered = broker.client.smembers(broker.key("__queues__"))  # every queue a worker consumes
        known = {q for q, _ in CONTRACTS.values()} | {
            q.decode() if isinstance(q, bytes) else str(q) for q in registered
        }
        return broker if queue in known else None
