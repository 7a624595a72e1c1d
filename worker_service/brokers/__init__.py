"""Broker construction from settings: Redis (``redis://``, ``rediss://``) or RabbitMQ (``amqp(s)://``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dramatiq import Broker
from dramatiq.middleware import Middleware

from settings import Settings
from worker_service.brokers.rabbitmq import ReliableRabbitmqBroker
from worker_service.brokers.redis import ReliableRedisBroker, make_connection_pool

if TYPE_CHECKING:
    import redis

__all__ = [
    "ReliableRabbitmqBroker",
    "ReliableRedisBroker",
    "build_broker",
    "make_redis_client",
    "make_shard_clients",
]


def make_redis_client(settings: Settings, url: str | None = None) -> redis.Redis:
    """A client with the broker's timeouts, health checks and retries (for ``url`` or BROKER_URL)."""
    import redis

    return redis.Redis(
        connection_pool=make_connection_pool(
            url or settings.broker_url,
            socket_timeout=settings.broker_socket_timeout_seconds,
            health_check_interval=settings.broker_health_check_seconds,
            connect_attempts=settings.broker_connect_attempts,
            sentinel_password=settings.redis_sentinel_password,
            sentinel_timeout=settings.redis_sentinel_timeout_seconds,
        )
    )


def make_shard_clients(settings: Settings) -> dict[str, redis.Redis]:
    """BROKER_SHARDS: queue -> a client of its Redis (one client per distinct URL)."""
    clients = {url: make_redis_client(settings, url) for url in set(settings.shard_urls.values())}
    return {queue: clients[url] for queue, url in settings.shard_urls.items()}


def build_broker(settings: Settings, middleware: Sequence[Middleware]) -> Broker:
    """A broker for ``BROKER_URL`` with exactly ``middleware`` (Dramatiq's defaults are not added)."""
    if settings.broker_kind == "rabbitmq":
        control = make_redis_client(
            settings, settings.ratelimit_url
        )  # pauses; RATELIMIT_REDIS_URL is required
        broker = ReliableRabbitmqBroker(
            url=settings.broker_url,
            middleware=list(middleware),
            queue_type=settings.rabbitmq_queue_type,
            crash_loop_limit=settings.crash_loop_limit,
            consumer_timeout_ms=settings.rabbitmq_consumer_timeout_ms,
            control=control,
        )
        params = broker.parameters[0] if isinstance(broker.parameters, list) else broker.parameters
        params.connection_attempts = settings.broker_connect_attempts
        params.retry_delay = 1.0
        params.socket_timeout = settings.broker_socket_timeout_seconds
        params.heartbeat = 30
        return broker
    return ReliableRedisBroker(
        client=make_redis_client(settings),
        middleware=list(middleware),
        heartbeat_timeout=settings.heartbeat_timeout_ms,
        crash_loop_limit=settings.crash_loop_limit,
        idle_poll_ms=settings.broker_idle_poll_ms,
        wait_replicas=settings.redis_wait_replicas,
        wait_timeout_ms=settings.redis_wait_timeout_ms,
        shards=make_shard_clients(settings),
    )
