"""A RabbitMQ broker with publisher confirms, quorum queues and the same settle contract as the Redis one.

Subclass of :class:`dramatiq.brokers.rabbitmq.RabbitmqBroker`:

* publisher confirms are always on, so a publish the broker did not take raises;
* a message with a successor (retry, deferral, pending dead letter) is acked
  only after its successor was published and confirmed; a failed publish
  raises ConnectionClosed and Dramatiq's consumer thread retries the whole
  settle, so nothing is acked without its successor (a duplicate is possible
  if the ack itself is lost; delivery is at least once);
* rejected messages (unknown actor, undecodable body, final failures the
  middleware could not store) go to the database dead-letter store and are
  then acked, so RabbitMQ's own ``.XQ`` holds only what RabbitMQ itself
  dead-lettered.

Queues (``RABBITMQ_QUEUE_TYPE``): quorum queues by default, replicated across
the cluster so a node's death loses no confirmed message.  A main queue has
``x-delivery-limit`` = ``CRASH_LOOP_LIMIT``: a message that kills its worker
is delivered at most ``CRASH_LOOP_LIMIT + 1`` times, then RabbitMQ
dead-letters it (at least once) to ``<queue>.XQ``, and the maintenance round
(:meth:`ReliableRabbitmqBroker.drain_dead_lettered`) turns it into a
``crash_loop`` dead letter and a failed record.  Every delivery RabbitMQ gets
back counts, so a graceful shutdown and a pause hand back what they fetched
and never started as fresh copies (publish, confirm, then ack) instead of
returning them.  Delay queues have no limit, and a delayed message is never
held unacknowledged past half of ``RABBITMQ_CONSUMER_TIMEOUT_MS``: one due
later is parked in ``<queue>.PQ`` (a message TTL of that half, dead-lettered
back to the delay queue) and looked at again when it comes back.

Pausing (``set_paused``) uses the fleet's control Redis (RATELIMIT_REDIS_URL,
brokers.pausing): a paused queue's consumers cancel their subscription and
subscribe again on resume.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import pika
from dramatiq.broker import MessageProxy
from dramatiq.brokers.rabbitmq import (
    DEAD_MESSAGE_TTL,
    MAX_DECLARE_ATTEMPTS,
    RabbitmqBroker,
    _RabbitmqConsumer,
    _RabbitmqMessage,
)
from dramatiq.common import current_millis, dq_name, q_name, xq_name
from dramatiq.errors import ConnectionClosed, DecodeError
from dramatiq.logging import get_logger
from dramatiq.message import Message

from worker_service.brokers.hooks import DefinedHooksDispatch
from worker_service.brokers.pausing import PAUSE_READ_S, PausedQueues
from worker_service.brokers.settle import DeadLetterSink, dead_letter_of, get_successor
from worker_service.outcome import PENDING_DEAD_LETTER, Dead, Successor, kill, state_of

if TYPE_CHECKING:
    from worker_service.ratelimit import RateLimiter

_AMQP_ERRORS = (pika.exceptions.AMQPConnectionError, pika.exceptions.AMQPChannelError)
QUEUE_TYPES = ("quorum", "classic")
QUEUE_START_S = (
    2.0  # a quorum queue just declared may not serve a basic.get yet (541 noproc): left alone this long
)


def pq_name(queue_name: str) -> str:
    """The parking queue of ``queue_name``'s delay queue."""
    return f"{q_name(queue_name)}.PQ"


class QueueTypeMismatch(RuntimeError):
    """A queue exists on the vhost with other arguments (a classic queue where quorum is configured)."""


class ReliableRabbitmqBroker(DefinedHooksDispatch, RabbitmqBroker):
    """RabbitmqBroker with confirms on, quorum queues and successor-before-ack settling.

    Parameters: as :class:`RabbitmqBroker` (``confirm_delivery`` is forced on), and
      queue_type(str): RABBITMQ_QUEUE_TYPE, ``quorum`` or ``classic``.
      crash_loop_limit(int): CRASH_LOOP_LIMIT, the main queues' ``x-delivery-limit`` (quorum only).
      consumer_timeout_ms(int): RABBITMQ_CONSUMER_TIMEOUT_MS; delayed messages are parked after half of it.
      control: the fleet's control Redis client (pauses), or None (nothing can be paused).
      namespace(str): key prefix in the control Redis.
    """

    def __init__(
        self,
        *,
        queue_type: str = "quorum",
        crash_loop_limit: int = 3,
        consumer_timeout_ms: int = 1_800_000,
        control: Any = None,
        namespace: str = "dramatiq",
        **kwargs: Any,
    ) -> None:
        if queue_type not in QUEUE_TYPES:
            raise ValueError(f"queue_type must be one of {QUEUE_TYPES}")
        kwargs["confirm_delivery"] = True
        super().__init__(**kwargs)
        self.dead_letter_sink: DeadLetterSink | None = None
        self.rate_limiter: RateLimiter | None = None  # set by middleware.ratelimit at process boot
        self.queue_type = queue_type
        self.crash_loop_limit = crash_loop_limit
        self.park_after_ms = consumer_timeout_ms // 2
        self.control = control
        self.namespace = namespace
        self.pauses = PausedQueues(control, f"{namespace}:__paused_queues__") if control is not None else None
        self.live_consumers: weakref.WeakSet[ReliableRabbitmqConsumer] = weakref.WeakSet()
        self.declared_at: dict[str, float] = {}  # canonical queue -> when this process declared it

    @property
    def consumer_class(self) -> type[_RabbitmqConsumer]:
        return ReliableRabbitmqConsumer

    def close(self) -> None:
        """Close every channel and connection.  Dramatiq's iterates the live sets, which a maintenance or
        reconciliation thread finishing its round may still grow ("Set changed size during iteration" made the
        worker process exit 1): copies here."""
        self._ignore_pika_logs()
        for channel_or_conn in [*self.channels, *self.connections]:
            try:
                channel_or_conn.close()
            except Exception:  # noqa: BLE001 - closing at shutdown: a channel already gone is fine
                self.logger.debug("Encountered an error while closing %r.", channel_or_conn, exc_info=True)

    # --- queues -----------------------------------------------------------------------
    def _arguments(self, dead_letter_to: str, *, delivery_limit: bool = False) -> dict[str, Any]:
        arguments: dict[str, Any] = {
            "x-dead-letter-exchange": "",
            "x-dead-letter-routing-key": dead_letter_to,
        }
        if self.queue_type == "quorum":
            # at-least-once dead-lettering needs reject-publish; quorum queues have no x-max-priority on 3.x
            arguments.update(
                {
                    "x-queue-type": "quorum",
                    "x-dead-letter-strategy": "at-least-once",
                    "x-overflow": "reject-publish",
                }
            )
            if delivery_limit:
                arguments["x-delivery-limit"] = self.crash_loop_limit
        return arguments

    def _declare_queue(self, queue_name: str) -> Any:
        return self.channel.queue_declare(
            queue=queue_name,
            durable=True,
            arguments=self._arguments(xq_name(queue_name), delivery_limit=True),
        )

    def _declare_dq_queue(self, queue_name: str) -> Any:
        return self.channel.queue_declare(
            queue=dq_name(queue_name), durable=True, arguments=self._arguments(xq_name(queue_name))
        )

    def _declare_xq_queue(self, queue_name: str) -> Any:
        arguments: dict[str, Any] = {"x-message-ttl": DEAD_MESSAGE_TTL}
        if self.queue_type == "quorum":
            arguments["x-queue-type"] = "quorum"
        return self.channel.queue_declare(queue=xq_name(queue_name), durable=True, arguments=arguments)

    def _declare_pq_queue(self, queue_name: str) -> Any:
        arguments = {**self._arguments(dq_name(queue_name)), "x-message-ttl": self.park_after_ms}
        return self.channel.queue_declare(queue=pq_name(queue_name), durable=True, arguments=arguments)

    def _ensure_queue(self, canonical_queue_name: str) -> None:
        """Declare the queue, its delay, dead-letter and parking queues; a queue that exists with other
        arguments raises QueueTypeMismatch (retrying cannot help)."""
        attempts = 0
        while canonical_queue_name in self.queues_pending:
            try:
                for declare in (
                    self._declare_queue,
                    self._declare_dq_queue,
                    self._declare_xq_queue,
                    self._declare_pq_queue,
                ):
                    declare(canonical_queue_name)
                self.queues_pending.discard(canonical_queue_name)
                self.declared_at.setdefault(canonical_queue_name, time.monotonic())
            except _AMQP_ERRORS as exc:
                del self.connection
                if getattr(exc, "reply_code", None) == 406:
                    raise QueueTypeMismatch(
                        f"RabbitMQ refused to declare queue {canonical_queue_name!r} as "
                        f"RABBITMQ_QUEUE_TYPE={self.queue_type}: {getattr(exc, 'reply_text', exc)}. The queues of "
                        f"this vhost exist with other arguments (classic queues from an earlier version?): set "
                        f"RABBITMQ_QUEUE_TYPE=classic, or migrate them (docs/operations.rst, 'Quorum queues')."
                    ) from None
                attempts += 1
                if attempts >= MAX_DECLARE_ATTEMPTS:
                    raise ConnectionClosed(exc) from None

    def publish_raw(self, queue_name: str, body: bytes) -> None:
        """Publish ``body`` as a fresh message on ``queue_name`` (a main, delay or parking queue) and wait for
        the confirm; raises ConnectionClosed if RabbitMQ did not take it."""
        self.declare_queue(queue_name.removesuffix(".PQ"), ensure=True)
        for attempt in range(3):
            try:
                self.channel.basic_publish(
                    exchange="",
                    routing_key=queue_name,
                    body=body,
                    properties=pika.BasicProperties(delivery_mode=2),
                    mandatory=True,
                )
                return
            except _AMQP_ERRORS as exc:
                del self.connection
                if attempt == 2:
                    raise ConnectionClosed(exc) from None

    def publish_successor(self, successor: Successor) -> None:
        message = successor.message.copy(queue_name=successor.message.queue_name.removesuffix(".DQ"))
        message.options.pop("eta", None)
        self.enqueue(message, delay=successor.delay_ms)

    # --- fleet maintenance (RabbitMQ requeues a dead consumer's deliveries at once) ------------
    def heartbeat(self) -> None:
        return None

    def register_queues(self) -> None:
        """The queues this process consumes, in the control Redis (``<ns>:__queues__``): the dashboard pauses
        only queues it knows."""
        if self.control is not None and self.queues:
            self.control.sadd(f"{self.namespace}:__queues__", *self.queues)

    def registered_queues(self) -> set[str]:
        if self.control is None:
            return set()
        return {
            q.decode() if isinstance(q, bytes) else str(q)
            for q in self.control.smembers(f"{self.namespace}:__queues__")
        }

    def recover_dead_workers(self) -> tuple[int, int]:
        return 0, 0

    def reconcile_held(self) -> int:
        return 0  # RabbitMQ redelivers what a lost channel held

    def mark_started(self, message: Any) -> None:
        return None

    def stop_deliveries(self) -> None:
        """A graceful shutdown begins: every main-queue consumer unsubscribes at its next turn, so the slots its
        finishing messages free are not filled with deliveries it would only hand back."""
        for consumer in list(self.live_consumers):
            consumer.stopping = True

    def drain_dead_lettered(self, queues: Iterable[str] | None = None) -> int:
        """What RabbitMQ dead-lettered into the ``.XQ`` queues (a delivery limit exceeded: a crash loop) becomes a
        dead letter in the database, and its record ends failed, as on Redis; returns how many.  A message is
        acked only once stored; if the database cannot take it, it stays for the next round.  ``queues``: these
        (the reconciler's, which this process may not consume), else the ones this process declared."""
        sink = self.dead_letter_sink
        if sink is None:
            return 0
        drained = 0
        settled = time.monotonic() - QUEUE_START_S
        names = (
            sorted(queues)
            if queues is not None
            else sorted(q for q, at in list(self.declared_at.items()) if at <= settled)
        )
        for queue_name in names:
            while True:
                try:
                    method, properties, body = self.channel.basic_get(xq_name(queue_name))
                except _AMQP_ERRORS as exc:
                    del self.connection
                    if getattr(exc, "reply_code", None) == 404:
                        break  # not declared yet on the server: nothing dead-lettered
                    raise ConnectionClosed(exc) from None
                if method is None:
                    break
                try:
                    self._store_dead_lettered(queue_name, properties, body, sink)
                except Exception:
                    self.channel.basic_nack(method.delivery_tag, requeue=True)
                    self.logger.warning(
                        "Could not store what RabbitMQ dead-lettered on %s; kept for the next round.",
                        queue_name,
                        exc_info=True,
                    )
                    return drained
                self.channel.basic_ack(method.delivery_tag)
                drained += 1
        return drained

    def _store_dead_lettered(
        self, queue_name: str, properties: Any, body: bytes, sink: DeadLetterSink
    ) -> None:
        headers = properties.headers or {}
        deaths = headers.get("x-death") or [{}]
        reason = str(deaths[0].get("reason") or headers.get("x-first-death-reason") or "unknown")
        try:
            message = Message.decode(body)
        except DecodeError as exc:
            sink.record_raw(
                queue_name, body, "undecodable", f"{type(exc.__cause__).__name__}: {exc.__cause__}"
            )
            return
        if reason == "delivery_limit":
            self.logger.error(
                "Message %s was delivered %d times and never settled (its worker died running it); "
                "dead-lettering it as crash_loop.",
                message.message_id,
                self.crash_loop_limit + 1,
            )
            dead = Dead.of(
                "crash_loop",
                RuntimeError(
                    f"worker process died while running this message: delivered {self.crash_loop_limit + 1} times "
                    f"(RabbitMQ's delivery limit, CRASH_LOOP_LIMIT={self.crash_loop_limit})"
                ),
            )
        else:
            dead = Dead.of("permanent_error", RuntimeError(f"dead-lettered by RabbitMQ ({reason})"))
        sink.record(message, dead)

    def take_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """A fleet-wide lease in the control Redis (the reconciler's); never granted without one."""
        if self.control is None:
            return False
        from worker_service.brokers.lua import SCRIPTS

        return bool(
            self.control.eval(SCRIPTS["lease"], 1, f"{self.namespace}:__lease__.{name}", holder, ttl_ms)
        )

    def backlog(self, queue_name: str) -> int:
        """Messages ready in ``queue_name`` (what its consumers have yet to take).  Delayed and parked messages
        belong to retries, whose leases run to their next attempt; deliveries held unacknowledged are not counted
        (AMQP does not tell), which is why workers renew the leases of what they hold (middleware.leases)."""
        try:
            return int(self.channel.queue_declare(queue_name, passive=True).method.message_count)
        except _AMQP_ERRORS as exc:
            del self.connection
            if getattr(exc, "reply_code", None) == 404:
                return 0  # never declared: holds nothing
            raise ConnectionClosed(exc) from None

    def held_messages(self) -> list[MessageProxy]:
        """Messages this process took from main queues and has not settled (prefetched or running)."""
        return [proxy for consumer in list(self.live_consumers) for proxy in list(consumer.held.values())]

    def report_worker(self, info: dict[str, Any]) -> None:
        return None  # the overview lists Redis fleets only (README, Known limits)

    def withdraw_worker(self) -> None:
        return None

    def tracked_messages(self, queues: Iterable[str]) -> None:
        """RabbitMQ cannot list a queue without consuming it (the reconciler then waits for an empty queue)."""
        return None

    # --- pausing ----------------------------------------------------------------------------
    def paused_queues(self) -> frozenset[str]:
        """The queues paused fleet-wide (brokers.pausing), if there is a control Redis."""
        return self.pauses.current() if self.pauses is not None else frozenset()

    def set_paused(self, queue_name: str, paused: bool) -> bool:
        """Pause or resume ``queue_name`` for the whole fleet; False if it already was."""
        if self.pauses is None:
            raise RuntimeError("pausing a RabbitMQ queue needs the control Redis (RATELIMIT_REDIS_URL)")
        return self.pauses.set(queue_name, paused)


class ReliableRabbitmqConsumer(_RabbitmqConsumer):
    broker: ReliableRabbitmqBroker

    def __init__(self, broker: ReliableRabbitmqBroker, queue_name: str, prefetch: int, timeout: int) -> None:
        super().__init__(broker, queue_name, prefetch, timeout)
        self.logger = get_logger(__name__, type(self))
        self.is_delay_queue = queue_name.endswith(".DQ")
        self.inactivity_s = timeout / 1000
        self.subscribed = True
        self.stopping = False  # set from another thread by the broker's stop_deliveries
        self.held: dict[int, MessageProxy] = {}  # delivery tag -> message taken and not settled (main queues)
        broker.live_consumers.add(self)

    def ack(self, message: MessageProxy) -> None:
        successor = get_successor(message)
        if successor is not None:
            try:
                self.broker.publish_successor(successor)
            except Exception as exc:
                raise ConnectionClosed(exc) from None
        self.held.pop(message._tag, None)
        super().ack(message)

    def nack(self, message: MessageProxy) -> None:
        sink = self.broker.dead_letter_sink
        if sink is None:
            return super().nack(message)
        dead = dead_letter_of(message)
        try:
            sink.record(message, dead)
        except Exception:
            self.logger.warning(
                "Could not store dead letter of %s; it is kept for later.", message.message_id, exc_info=True
            )
            state_of(message).successor = sink.pending_successor(message, dead)
        self.ack(message)

    def requeue(self, messages: Iterable[MessageProxy]) -> None:
        """Shutdown: what was fetched and never started goes back as fresh copies, then is acked.  Returned
        deliveries count toward a quorum queue's delivery limit; a restart must not spend a healthy message's."""
        if self.is_delay_queue:
            return  # no limit there: closing the channel returns them
        for message in messages:
            self.broker.publish_raw(self.queue_name, message.encode())
            super().ack(message)

    def _hand_back_buffered(self) -> None:
        """Deliveries pika received and Dramatiq never took: fresh copies, then acks (as ``requeue``)."""
        while self.channel.get_waiting_message_count():
            method, _properties, body = next(self.iterator)
            if method is None:
                return
            self.broker.publish_raw(self.queue_name, body)
            self.channel.basic_ack(method.delivery_tag)

    def close(self) -> None:
        self.broker.live_consumers.discard(self)
        self.held.clear()
        if not self.is_delay_queue and self.subscribed:
            try:
                self._hand_back_buffered()
            except Exception:  # noqa: BLE001 - they return with the channel instead (one delivery counted)
                self.logger.warning(
                    "Could not hand back prefetched messages of %s.", self.queue_name, exc_info=True
                )
        super().close()

    def _held_back(self) -> bool:
        """Paused by an operator, or shutting down: unsubscribe (handing back what was prefetched); resumed:
        subscribe again.  True while nothing is to be fetched."""
        if self.is_delay_queue:
            return False  # delayed messages wait; resuming or restarting does not hurt them
        held = self.stopping or self.queue_name in self.broker.paused_queues()
        if held and self.subscribed:
            self._hand_back_buffered()
            self.channel.cancel()
            self.subscribed = False
            self.logger.info(
                "Unsubscribed from %s (%s).", self.queue_name, "shutting down" if self.stopping else "paused"
            )
        elif not held and not self.subscribed:
            self.iterator = self.channel.consume(self.queue_name, inactivity_timeout=self.inactivity_s)
            self.subscribed = True
            self.logger.info("Queue %s resumed: subscribed again.", self.queue_name)
        return held

    def __next__(self) -> _RabbitmqMessage | None:
        try:
            if self._held_back():
                self.connection.sleep(PAUSE_READ_S / 2)
                return None
            method, properties, body = next(self.iterator)
            if method is None:
                return None
        except (AssertionError, *_AMQP_ERRORS) as exc:
            if getattr(exc, "reply_code", None) == 404:
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
                sink.record_raw(
                    self.queue_name, body, "undecodable", f"{type(exc.__cause__).__name__}: {exc.__cause__}"
                )
                self.connection.add_callback_threadsafe(lambda: self.channel.basic_ack(method.delivery_tag))
            except Exception:
                self.logger.warning("Could not store undecodable message; requeueing it.", exc_info=True)
                self.connection.add_callback_threadsafe(
                    lambda: self.channel.basic_nack(method.delivery_tag, requeue=True)
                )
            return None
        if (
            self.is_delay_queue
            and int(message.options.get("eta", 0)) - current_millis() > self.broker.park_after_ms
        ):
            # Due later than it may be held unacknowledged (consumer_timeout): parked, back in park_after_ms.
            try:
                self.broker.publish_raw(pq_name(self.queue_name), body)
                self.channel.basic_ack(method.delivery_tag)
            except _AMQP_ERRORS as exc:
                raise ConnectionClosed(exc) from None
            return None
        proxy = _RabbitmqMessage(method.redelivered, method.delivery_tag, message)
        self.known_tags.add(method.delivery_tag)
        if not self.is_delay_queue:
            self.held[method.delivery_tag] = proxy
        pending = message.options.get(PENDING_DEAD_LETTER)
        if pending and self.broker.dead_letter_sink is not None and not self.is_delay_queue:
            # Dead already; only its row was missing (database outage): store it, never run the actor again.
            kill(proxy, Dead.from_option(pending))
            self.nack(proxy)
            return None
        return proxy
