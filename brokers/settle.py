"""How a processed message leaves the broker: acked alone, or acked together with its successor.

Dramatiq acks a message in ``ConsumerThread.post_process_message`` and
retries the ack every 5 s while the broker is unreachable.  Middleware
cannot stop that ack (after-hooks swallow exceptions), so anything that
must be enqueued *instead of* losing the message (a retry, a deferral, a
dead letter the database could not take yet) is attached to the message as
its successor, and the broker's consumer enqueues it as part of the ack: on
Redis in one Lua script, on RabbitMQ publish-with-confirm then ack.  A
broker outage at that moment therefore delays the message, never loses it.

The consumer also owns the dead letters that no middleware hook can reach
(undecodable bodies, unknown actors, crash loops): it hands them to the
broker's ``dead_letter_sink``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from dramatiq.broker import MessageProxy
from dramatiq.message import Message

SUCCESSOR_ATTR = "worker_successor"


@dataclass(frozen=True)
class Successor:
    message: Message
    delay_ms: int | None = None


def set_successor(proxy: MessageProxy, message: Message, delay_ms: int | None) -> None:
    setattr(proxy, SUCCESSOR_ATTR, Successor(message, delay_ms))


def get_successor(proxy: MessageProxy) -> Successor | None:
    return proxy.__dict__.get(SUCCESSOR_ATTR)


class DeadLetterSink(Protocol):
    """Persists a dead letter; raises when it cannot (the caller then keeps the message)."""

    def record_message(self, message: MessageProxy | Message, error_type: str, exception: BaseException | None,
                       error_message: str | None = None) -> None: ...

    def record_raw(self, queue: str, body: bytes, error_type: str, error_message: str) -> None: ...

    def pending_successor(self, message: MessageProxy | Message, error_type: str,
                          exception: BaseException | None, error_message: str | None = None) -> Successor: ...


def classify_consumer_failure(proxy: MessageProxy) -> tuple[str, BaseException | None]:
    """The dead-letter reason of a message the consumer itself must reject."""
    from dramatiq.errors import ActorNotFound

    exc: Any = proxy.__dict__.get("_exception")
    reason = proxy.__dict__.get("dead_letter_type")
    if reason:
        return reason, exc
    if isinstance(exc, ActorNotFound):
        return "unknown_actor", exc
    return "permanent_error", exc
