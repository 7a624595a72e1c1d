"""The fleet-wide rate limiter: GCRA per upstream, fleet pauses and concurrency leases, in Redis.

The upstream clients call ``slot(upstream)`` before each HTTP request; the
limiter is GCRA in one Lua script over Redis (server time, so host clocks do
not matter), shared by every process and host.  ``slot`` waits for the next
free slot when that wait is short (bounded by ``max_wait_ms``), else raises
:class:`RateLimited`, which the retry middleware turns into a deferral that
spends no attempt.  ``pause`` stops an upstream for the whole fleet (an
upstream 429 with Retry-After, a 402, a 403 block).  The middleware that
wires it into the worker is middleware.ratelimit.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import redis

from worker_service.errors import TransientError
from worker_service.observability.metrics import PAUSES, WAITS

logger = logging.getLogger(__name__)

_GCRA = """
-- KEYS[1] tat key, KEYS[2] pause key, KEYS[3] prefix of the granted-per-10-s counters; ARGV: interval_ms, burst
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
-- the rate used, for the dashboard: one counter per 10 s of server time (a single Redis: the name is built here)
local granted = KEYS[3] .. '.' .. math.floor(tonumber(t[1]) / 10)
redis.call('INCR', granted)
redis.call('EXPIRE', granted, 90)
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


def limiter_of(broker: Any) -> RateLimiter:
    """The fleet's limiter of ``broker`` (attached at process boot by middleware.ratelimit)."""
    limiter: RateLimiter | None = getattr(broker, "rate_limiter", None)
    if limiter is None:
        raise RuntimeError("no rate limiter on this broker: the RateLimit middleware is not installed")
    return limiter


class RateLimited(TransientError):
    """No slot within the wait bound, or the upstream is paused: defer, spend no attempt.

    ``charges_window``: whether the wait counts in the message's time budget (rejected credentials do: the
    messages wait for a fix, but not forever; a rate limit or a spending cap does not).
    """

    def __init__(
        self,
        upstream: str,
        wait_ms: int,
        *,
        paused: bool = False,
        charges_window: bool = False,
        error_code: str = "rate_limited",
    ) -> None:
        what = "paused" if paused else "rate-limited"
        super().__init__(
            f"upstream {upstream} {what}; next slot in {wait_ms} ms",
            error_code=error_code,
            retry_after_ms=wait_ms,
            spends_attempt=False,
            charges_window=charges_window,
        )
        self.upstream = upstream
        self.paused = paused


@dataclass(frozen=True)
class Limit:
    """``rate`` requests per second with bursts of ``burst``; ``slot`` waits up to ``max_wait_ms`` (None: the
    limiter's default) before the message is put back behind others instead."""

    rate: float
    burst: int = 1
    max_wait_ms: int | None = None


class RateLimiter:
    """Fleet-wide GCRA limits and pauses.

    Parameters:
      client: Redis client (the broker's, or a dedicated one on RabbitMQ deployments).
      limits: upstream name -> Limit.
      namespace: key prefix.
      max_wait_ms: how long ``slot`` may block before it raises RateLimited.
    """

    def __init__(
        self,
        client: redis.Redis,
        limits: dict[str, Limit],
        *,
        namespace: str = "dramatiq",
        max_wait_ms: int = 5_000,
    ) -> None:
        self.client = client
        self.limits = limits
        self.namespace = namespace
        self.max_wait_ms = max_wait_ms
        self._gcra = client.register_script(_GCRA)
        self._lease = client.register_script(_LEASE)

    def _keys(self, upstream: str) -> list[str]:
        """The GCRA state, the fleet pause, and the prefix of the granted-per-10-s counters of ``upstream``."""
        return [
            f"{self.namespace}:__ratelimit__.{upstream}",
            f"{self.namespace}:__pause__.{upstream}",
            f"{self.namespace}:__granted__.{upstream}",
        ]

    def try_acquire(self, upstream: str) -> tuple[bool, int, bool]:
        limit = self.limits[upstream]
        allowed, wait_ms, paused = self._gcra(
            keys=self._keys(upstream), args=[1000.0 / limit.rate, limit.burst]
        )
        return bool(allowed), int(wait_ms), bool(paused)

    def slot(self, upstream: str, max_wait_ms: int | None = None) -> float:
        """Take one request slot, waiting up to ``max_wait_ms``; returns the seconds waited."""
        limit_wait = self.limits[upstream].max_wait_ms
        bound = (
            max_wait_ms
            if max_wait_ms is not None
            else limit_wait
            if limit_wait is not None
            else self.max_wait_ms
        )
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

    def pause(self, upstream: str, ms: int, reason: str, *, quiet: bool = False) -> None:
        """Pause an upstream for the whole fleet (never shortens a longer pause).

        ``quiet``: the caller counts and reports the pause itself (once, however many threads pause it).
        """
        key = self._keys(upstream)[1]
        current = self.client.pttl(key)
        if current is None or current < ms:
            self.client.set(key, reason, px=max(1, int(ms)))
        if not quiet:
            self.count_pause(upstream, reason)
            logger.warning("Upstream %s paused for %d ms fleet-wide: %s", upstream, ms, reason)

    @staticmethod
    def count_pause(upstream: str, reason: str) -> None:
        """``worker_upstream_pauses_total{upstream, reason}``: the reason up to its first colon."""
        PAUSES.labels(upstream, reason.split(":", 1)[0]).inc()

    def paused_for(self, upstream: str) -> int:
        ttl = self.client.pttl(self._keys(upstream)[1])
        return max(0, int(ttl or 0))

    def pause_reason(self, upstream: str) -> str | None:
        value = self.client.get(self._keys(upstream)[1])
        return value.decode() if isinstance(value, bytes) else value

    def rate_used(self, upstream: str, seconds: int = 60) -> float:
        """Requests per second the fleet was granted to ``upstream`` over the last ``seconds`` (whole 10 s
        buckets of Redis time, the current partial one left out), as the GCRA script counted them."""
        now, _micro = self.client.time()
        current = int(now) // 10
        prefix = self._keys(upstream)[2]
        buckets = [f"{prefix}.{b}" for b in range(current - seconds // 10, current)]
        return sum(int(n) for n in self.client.mget(buckets) if n) / (len(buckets) * 10)

    # --- concurrency leases ------------------------------------------------------------
    def lease(self, name: str, holder: str, limit: int, lease_ms: int) -> bool:
        return bool(
            self._lease(keys=[f"{self.namespace}:__concurrency__.{name}"], args=[holder, limit, lease_ms])
        )

    def release(self, name: str, holder: str) -> None:
        self.client.zrem(f"{self.namespace}:__concurrency__.{name}", holder)
