"""A RabbitMQ broker with publisher confirms and the same settle contract as the Redis one.

Subclass of :class:`dramatiq.brokers.rabbitmq.RabbitmqBroker`:

* publisher confirms are always on, so a publish the broker did not take raises;
* a message with a successor (retry, deferral, pending dead letter) is acked
  only after its successor was published and confirmed; a failed publish
  raises ConnectionClosed and Dramatiq's consumer thread retries the whole
  settle, so nothing is acked without its successor (a duplicate is possible
  if the ack itself is lost; delivery is at least once);
* rejected messages (unknown actor, undecodable body, final failures the
  middleware could not store) go to the database dead-letter store and are
  then acked, so RabbitMQ's own ``.XQ`` never holds a second, stale copy.

Crash loops: RabbitMQ redelivers a dead worker's messages as soon as the
connection drops, so the Redis broker's crash counter does not apply; a
message that kills its worker is redelivered with ``redelivered=True``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pika
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import RabbitmqBroker, _RabbitmqConsumer, _RabbitmqMessage
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.logging import get_logger
from dramatiq.message import Message

from worker_service.brokers.hooks import DefinedHooksDispatch
from worker_service.brokers.settle import DeadLetterSink, dead_letter_of, get_successor
from worker_service.outcome import PENDING_DEAD_LETTER, Dead, Successor, kill, state_of

if TYPE_CHECKING:
    from worker_service.ratelimit import RateLimiter

_AMQP_ERRORS = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError)


class ReliableRabbitmqBroker(DefinedHooksDispatch, RabbitmqBroker):
    """RabbitmqBroker with confirms on and successor-before-ack settling.

    Parameters: as :class:`RabbitmqBroker`; ``confirm_delivery`` is forced on.
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs["confirm_delivery"] = True
        super().__init__(**kwargs)
        self.dead_letter_sink: DeadLetterSink | None = None
        self.rate_limiter: RateLimiter | None = None  # set by middleware.ratelimit at process boot
        self.crash_loop_limit = 0

    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return ReliableRabbitmqConsumer

    def publish_successor(self, successor: Successor) -> None:
        message = successor.message.copy(queue_name=successor.message.queue_name.removesuffix(".DQ"))
        message.options.pop("eta", None)
        self.enqueue(message, delay=successor.delay_ms)

    # Fleet maintenance is RabbitMQ's job (it requeues a dead consumer's deliveries at once).
    def heartbeat(self) -> None:
        return None

    def register_queues(self) -> None:
        return None

    def recover_dead_workers(self) -> tuple[int, int]:
        return 0, 0

    def reconcile_held(self) -> int:
        return 0  # RabbitMQ redelivers what a lost channel held

    def mark_started(self, message: Any) -> None:
        return None

    def tracked_messages(self, queues: Iterable[str]) -> None:
        """RabbitMQ cannot list a queue without consuming it: the reconciler stays off (README, Known limits)."""
        return None

    def take_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        return False

    def report_worker(self, info: dict[str, Any]) -> None:
        return None  # the overview lists Redis fleets only (README, Known limits)

    def paused_queues(self) -> frozenset[str]:
        """Pausing a queue needs the Redis broker (README, Known limits)."""
        return frozenset()


class ReliableRabbitmqConsumer(_RabbitmqConsumer):
    broker: ReliableRabbitmqBroker

    def __init__(self, broker: ReliableRabbitmqBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.logger = get_logger(__name__, type(self))

    def ack(self, message: MessageProxy) -> None:
        successor = get_successor(message)
        if successor is not None:
            try:
                self.broker.publish_successor(successor)
            except Exception as exc:
                raise ConnectionClosed(exc) from None
        super().ack(message)

    def nack(self, message: MessageProxy) -> None:
        sink = self.broker.dead_letter_sink
        if sink is None:
            return super().nack(message)
        dead = dead_letter_of(message)
        try:
            sink.record(message, dead)
        except Exception:
            self.logger.warning("Could not store dead letter of %s; it is kept for later.",
                                message.message_id, exc_info=True)
            state_of(message).successor = sink.pending_successor(message, dead)
        self.ack(message)

    def __next__(self) -> _RabbitmqMessage | None:
        try:
            method, _properties, body = next(self.iterator)
            if method is None:
                return None
        except (AssertionError, *_AMQP_ERRORS) as exc:
            if getattr(exc, "reply_code", None) == 404:
                from dramatiq.common import q_name

                self.broker.queues_pending.add(q_name(self.queue_name))
            raise ConnectionClosed(exc) from None
        try:
            message = Message.decode(body)
        except DecodeError as exc:
            self.logger.error("Undecodable message on %s: %s", self.queue_name, exc.__cause__)
            sink = self.broker.dead_letter_sink
            if sink is None:
                self._nack(method.delivery_tag)
                return None
            try:
                sink.record_raw(self.queue_name, body, "undecodable", f"{type(exc.__cause__).__name__}: {exc.__cause__}")
                self.connection.add_callback_threadsafe(lambda: self.channel.basic_ack(method.delivery_tag))
            except Exception:
                self.logger.warning("Could not store undecodable message; requeueing it.", exc_info=True)
                self.connection.add_callback_threadsafe(
                    lambda: self.channel.basic_nack(method.delivery_tag, requeue=True))
            return None
        proxy = _RabbitmqMessage(method.redelivered, method.delivery_tag, message)
        self.known_tags.add(method.delivery_tag)
        pending = message.options.get(PENDING_DEAD_LETTER)
        if pending and self.broker.dead_letter_sink is not None and not self.queue_name.endswith(".DQ"):
            # Dead already; only its row was missing (database outage): store it, never run the actor again.
            kill(proxy, Dead.from_option(pending))
            self.nack(proxy)
            return None
        return proxy
