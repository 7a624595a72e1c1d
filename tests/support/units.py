"""Small, real pieces for unit tests: a StubBroker with actors declared, and messages to hand to hooks.

No Redis, no worker process: a middleware hook is called with what Dramatiq would pass it.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.brokers.stub import StubBroker
from dramatiq.message import Message
from dramatiq.middleware import Middleware


class _DeclaresOptions(Middleware):
    """Lets the stub broker accept this service's actor options without their middleware."""

    @property
    def actor_options(self) -> set[str]:
        return {
            "status_track",
            "rate_limit",
            "concurrency_limit",
            "max_attempts",
            "retry_hours",
            "throws",
            "time_limit",
        }


def stub_broker(middleware: Iterable[Middleware] = (), **actors: dict[str, Any]) -> StubBroker:
    """A StubBroker with ``middleware`` and one no-op actor per keyword (``name={options}``)."""
    broker = StubBroker(middleware=[_DeclaresOptions(), *middleware])
    for name, options in actors.items():
        dramatiq.actor(
            lambda **kwargs: None,
            actor_name=name,
            broker=broker,
            queue_name=options.pop("queue_name", "tests"),
            **options,
        )
    return broker


def proxy(
    actor: str = "noop",
    *,
    queue: str = "tests",
    kwargs: dict[str, Any] | None = None,
    timestamp: int | None = None,
    **options: Any,
) -> MessageProxy:
    return MessageProxy(
        Message(
            queue_name=queue,
            actor_name=actor,
            args=(),
            kwargs=kwargs or {},
            options=options,
            message_id=str(uuid.uuid4()),
            message_timestamp=timestamp or int(time.time() * 1000),
        )
    )
