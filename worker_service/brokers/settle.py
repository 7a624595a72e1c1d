"""How a processed message leaves the broker, and what the middleware need from a broker.

Dramatiq acks a message in ``ConsumerThread.post_process_message`` and
retries the ack every 5 s while the broker is unreachable.  Middleware
cannot stop that ack (after-hooks swallow exceptions), so anything that
must be enqueued *instead of* losing the message (a retry, a deferral, a
dead letter the database could not take yet) is attached to the message as
its :class:`~outcome.Successor`, and the broker's consumer enqueues it as
part of the ack: on Redis in one Lua script, on RabbitMQ publish-with-confirm
then ack.  A broker outage at that moment therefore delays the message,
never loses it.

The consumer also owns the dead letters that no middleware hook can reach
(undecodable bodies, unknown actors, crash loops, dead letters pending from
an earlier database outage): it hands them to the broker's
``dead_letter_sink``.  :class:`ReliableBroker` is the contract both brokers
implement for the middleware.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Protocol, cast, runtime_checkable

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.message import Message

from worker_service.outcome import Dead, Successor, outcome_of, state_of, successor_of

if TYPE_CHECKING:
    from worker_service.ratelimit import RateLimiter

__all__ = [
    "DeadLetterSink",
    "ReliableBroker",
    "Successor",
    "dead_letter_of",
    "get_successor",
    "reliable",
    "set_successor",
]


def set_successor(proxy: MessageProxy, message: Message, delay_ms: int | None) -> None:
    state_of(proxy).successor = Successor(message, delay_ms)


def get_successor(proxy: MessageProxy) -> Successor | None:
    return successor_of(proxy)


class DeadLetterSink(Protocol):
    """Persists dead letters; raises when it cannot (the caller then keeps the message)."""

    def record(self, message: MessageProxy | Message, dead: Dead) -> None:
        """Store the dead letter and, in the same transaction, finish the record the message tracks."""

    def record_raw(self, queue: str, body: bytes, error_type: str, error_message: str) -> None: ...

    def pending_successor(self, message: MessageProxy | Message, dead: Dead) -> Successor:
        """The copy to enqueue instead of the dead letter when it could not be stored."""


@runtime_checkable
class ReliableBroker(Protocol):
    """What the reliability middleware need from a broker (Redis and RabbitMQ implement it).

    Beyond these members, the broker's consumer must honour :func:`get_successor` on ack (enqueue
    the successor in the same step, or not ack) and hand every rejected message to
    ``dead_letter_sink`` with its :class:`~outcome.Dead` outcome.
    """

    dead_letter_sink: DeadLetterSink | None
    rate_limiter: RateLimiter | None
    crash_loop_limit: int

    def heartbeat(self) -> None:
        """Record that this worker process is alive."""

    def register_queues(self) -> None:
        """Make this process's queues known to fleet-wide recovery."""

    def recover_dead_workers(self) -> tuple[int, int]:
        """Requeue what silent workers held: (dead workers, messages requeued)."""

    def stop_deliveries(self) -> None:
        """A graceful shutdown begins: stop taking deliveries that would only be handed back."""

    def drain_dead_lettered(self, queues: Iterable[str] | None = None) -> int:
        """Turn what the broker itself dead-lettered (RabbitMQ's delivery limit) into dead letters; how many.
        ``queues``: these (None: the ones this process declared)."""

    def reconcile_held(self) -> int:
        """After a master change: requeue what the broker says this process holds and it does not."""

    def mark_started(self, message: MessageProxy) -> None:
        """Note that ``message`` is about to run (a death now counts as a crash)."""

    def backlog(self, queue_name: str) -> int:
        """How many messages ``queue_name`` holds that a record under way may be waiting for (the reconciler's
        first question)."""

    def held_messages(self) -> list[MessageProxy]:
        """Messages this process holds that the broker cannot report itself (their records' leases are renewed)."""

    def tracked_messages(self, queues: Iterable[str]) -> Iterable[dict[str, Any]] | None:
        """Every message present in ``queues`` (queued, delayed or held by a worker), decoded;
        ``None`` when this broker cannot list them."""

    def take_lease(self, name: str, holder: str, ttl_ms: int) -> bool:
        """Take or renew a fleet-wide lease; True while ``holder`` owns it."""

    def report_worker(self, info: dict[str, Any]) -> None:
        """Publish what this worker process is doing (the dashboard's overview lists the fleet)."""

    def withdraw_worker(self) -> None:
        """Remove this process's report: it stopped gracefully (the overview lists it no more)."""

    def paused_queues(self) -> frozenset[str]:
        """Queues an operator paused fleet-wide (read at most every second): their messages are not started."""


def reliable(broker: dramatiq.Broker) -> ReliableBroker:
    """``broker`` as the contract the middleware rely on (Dramatiq types hooks with its base Broker)."""
    return cast(ReliableBroker, broker)


def dead_letter_of(proxy: MessageProxy) -> Dead:
    """Why the consumer must reject ``proxy``: the middleware's verdict, or one made from its exception."""
    from dramatiq.errors import ActorNotFound

    dead = outcome_of(proxy)
    if isinstance(dead, Dead):
        return dead
    exc: Any = proxy.__dict__.get("_exception")  # set by Dramatiq's stuff_exception
    if isinstance(exc, ActorNotFound):
        return Dead.of("unknown_actor", exc, error_message=f"no actor named {proxy.actor_name!r}")
    return Dead.of("permanent_error", exc)
