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
``broker.rate_limiter.slot(upstream)`` before each request.  The limiter is
GCRA in one Lua script over Redis (server time, so host clocks do not
matter), shared by every process and host; ``slot`` waits for the next
free slot when that wait is short (bounded by ``max_wait_ms``), else raises
:class:`RateLimited`, which the retry middleware turns into a deferral that
spends no attempt.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from dataclasses import dataclass
from typing import Any

import dramatiq
import redis
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware, SkipMessage

from middleware.errors import TransientError
from middleware.metrics import PAUSES, WAITS
from middleware.retries import defer
from outcome import state_of

logger = logging.getLogger(__name__)

_GCRA = """
-- KEYS[1] tat key, KEYS[2] pause key; ARGV: interval_ms, burst
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local paused = redis.call('PTTL', KEYS[2])
if paused > 0 then return {0, paused, 1} end
local interval = tonumber(ARGV[1])
local tolerance = interval * (tonumber(ARGV[2]) - 1)
local tat = tonumber(redis.call('GET', KEYS[1]) or now)
if tat < now then tat = now end
local wait = tat - tolerance - now
if wait > 0 then return {0, wait, 0} end
redis.call('SET', KEYS[1], tat + interval, 'PX', math.ceil(tat + interval - now + 1000))
return {1, 0, 0}
"""

_LEASE = """
-- KEYS[1] holders zset; ARGV: holder, limit, lease_ms
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 1 end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[3]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[3]) * 2)
return 1
"""


class RateLimited(TransientError):
    """No slot within the wait bound, or the upstream is paused: defer, spend no attempt."""

    def __init__(self, upstream: str, wait_ms: int, *, paused: bool = False) -> None:
        what = "paused" if paused else "rate-limited"
        super().__init__(f"upstream {upstream} {what}; next slot in {wait_ms} ms", error_code="rate_limited",
                         retry_after_ms=wait_ms, spends_attempt=False)
        self.upstream = upstream
        self.paused = paused


@dataclass(frozen=True)
class Limit:
    rate: float  # requests per second
    burst: int = 1


class RateLimiter:
    """Fleet-wide GCRA limits and pauses.

    Parameters:
      client: Redis client (the broker's, or a dedicated one on RabbitMQ deployments).
      limits: upstream name -> Limit.
      namespace: key prefix.
      max_wait_ms: how long ``slot`` may block before it raises RateLimited.
    """

    def __init__(self, client: redis.Redis, limits: dict[str, Limit], *, namespace: str = "dramatiq",
                 max_wait_ms: int = 5_000) -> None:
        self.client = client
        self.limits = limits
        self.namespace = namespace
        self.max_wait_ms = max_wait_ms
        self._gcra = client.register_script(_GCRA)
        self._lease = client.register_script(_LEASE)

    def _keys(self, upstream: str) -> list[str]:
        return [f"{self.namespace}:__ratelimit__.{upstream}", f"{self.namespace}:__pause__.{upstream}"]

    def try_acquire(self, upstream: str) -> tuple[bool, int, bool]:
        limit = self.limits[upstream]
        allowed, wait_ms, paused = self._gcra(keys=self._keys(upstream),
                                              args=[1000.0 / limit.rate, limit.burst])
        return bool(allowed), int(wait_ms), bool(paused)

    def slot(self, upstream: str, max_wait_ms: int | None = None) -> float:
        """Take one request slot, waiting up to ``max_wait_ms``; returns the seconds waited."""
        bound = self.max_wait_ms if max_wait_ms is None else max_wait_ms
        started = time.monotonic()
        while True:
            allowed, wait_ms, paused = self.try_acquire(upstream)
            if allowed:
                waited = time.monotonic() - started
                if waited:
                    WAITS.labels(upstream).inc(waited)
                return waited
            spent_ms = (time.monotonic() - started) * 1000
            if paused or spent_ms + wait_ms > bound:
                raise RateLimited(upstream, wait_ms + random.randint(0, 250), paused=paused)
            time.sleep(wait_ms / 1000 + random.uniform(0, 0.002))

    def pause(self, upstream: str, ms: int, reason: str) -> None:
        """Pause an upstream for the whole fleet (never shortens a longer pause)."""
        key = self._keys(upstream)[1]
        current = self.client.pttl(key)
        if current is None or current < ms:
            self.client.set(key, reason, px=max(1, int(ms)))
        PAUSES.labels(upstream, reason.split(":", 1)[0]).inc()
        logger.warning("Upstream %s paused for %d ms fleet-wide: %s", upstream, ms, reason)

    def paused_for(self, upstream: str) -> int:
        ttl = self.client.pttl(self._keys(upstream)[1])
        return max(0, int(ttl or 0))

    def pause_reason(self, upstream: str) -> str | None:
        value = self.client.get(self._keys(upstream)[1])
        return value.decode() if value else None

    # --- concurrency leases ------------------------------------------------------------
    def lease(self, name: str, holder: str, limit: int, lease_ms: int) -> bool:
        return bool(self._lease(keys=[f"{self.namespace}:__concurrency__.{name}"], args=[holder, limit, lease_ms]))

    def release(self, name: str, holder: str) -> None:
        self.client.zrem(f"{self.namespace}:__concurrency__.{name}", holder)


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
        broker.rate_limiter = self.limiter

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        try:
            actor = broker.get_actor(message.actor_name)
        except Exception:  # noqa: BLE001 - unknown actor: the consumer dead-letters it
            return
        upstream = actor.options.get("rate_limit")
        if upstream:
            paused = self.limiter.paused_for(upstream)
            if paused:
                logger.info("Deferring %s: upstream %s paused for %d ms (%s).", message.message_id, upstream, paused,
                            self.limiter.pause_reason(upstream))
                defer(message, paused + random.randint(0, 1000), f"upstream {upstream} paused")
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

    def after_process_message(self, broker: dramatiq.Broker, message: MessageProxy, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        self._release(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._release(message)
