"""Distributed rate limits per upstream, and concurrency limits with per-holder leases.

Hooks: ``after_process_boot`` (attaches ``broker.rate_limiter``),
``before_process_message`` (pauses, concurrency), ``after_process_message``
and ``after_skip_message`` (lease release).

Actor options:
  rate_limit(str): the upstream this actor calls (``openrouter``, ``kommo``).
    While that upstream is paused fleet-wide (an upstream 429 with
    Retry-After, a 402, a 403 block) messages are deferred until the pause
    ends, without spending an attempt.
  concurrency_limit(int): at most this many messages of the actor run at
    once across the fleet; a full limiter defers the message.  Slots are
    leases that expire ``lease_ms`` after acquisition, so a killed holder's
    slot comes back by itself.

The rate itself is enforced *per HTTP request*: the upstream's client calls
``broker.rate_limiter.slot(upstream)`` before each request (worker_service/ratelimit.py:
GCRA over Redis, shared by the fleet).
"""

from __future__ import annotations

import logging
import random
import uuid
from typing import Any

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage

from worker_service.brokers.settle import reliable
from worker_service.outcome import defer, state_of
from worker_service.ratelimit import RateLimiter

logger = logging.getLogger(__name__)


class RateLimit(Middleware):
    """Wires the limiter into the worker.

    Parameters:
      limiter(RateLimiter)
      default_lease_ms(int): concurrency lease length when the actor has no time limit.
    """

    def __init__(self, limiter: RateLimiter, *, default_lease_ms: int = 600_000) -> None:
        self.limiter = limiter
        self.default_lease_ms = default_lease_ms

    @property
    def actor_options(self) -> set[str]:
        return {"rate_limit", "concurrency_limit"}

    def after_process_boot(self, broker: dramatiq.Broker) -> None:
        reliable(broker).rate_limiter = self.limiter

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        try:
            actor = broker.get_actor(message.actor_name)
        except Exception:  # noqa: BLE001 - unknown actor: the consumer dead-letters it
            return
        upstream = actor.options.get("rate_limit")
        if upstream:
            paused = self.limiter.paused_for(upstream)
            if paused:
                logger.info(
                    "Deferring %s: upstream %s paused for %d ms (%s).",
                    message.message_id,
                    upstream,
                    paused,
                    self.limiter.pause_reason(upstream),
                )
                defer(
                    message,
                    paused + random.randint(0, 1000),
                    f"upstream {upstream} paused",
                    charge_window=False,
                )
                raise SkipMessage(f"upstream {upstream} paused")
        limit = actor.options.get("concurrency_limit")
        if limit:
            holder = f"{message.message_id}:{uuid.uuid4()}"
            lease_ms = int(actor.options.get("time_limit") or self.default_lease_ms) + 30_000
            if not self.limiter.lease(actor.actor_name, holder, int(limit), lease_ms):
                defer(message, random.randint(500, 2000), "concurrency limit")
                raise SkipMessage("concurrency limit reached")
            state_of(message).lease = (actor.actor_name, holder)

    def _release(self, message: MessageProxy) -> None:
        state = state_of(message)
        held, state.lease = state.lease, None
        if held:
            try:
                self.limiter.release(*held)
            except redis.RedisError:  # the lease expires by itself
                logger.warning("Could not release concurrency lease %s; it will expire.", held[1])

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._release(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._release(message)
