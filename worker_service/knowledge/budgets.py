"""Spending caps for paid upstream calls: per asset (chunks, USD) and fleet-wide per UTC day (USD).

:class:`AssetBudget` is checked before each LLM call of one asset's extraction: over
KNOWLEDGE_MAX_CHUNKS or KNOWLEDGE_MAX_COST_USD the extraction ends ``budget_exceeded`` (a permanent
error), so at most one call goes over the cost cap.

:class:`DailyBudget` keeps the fleet's spend of the current UTC day in Redis (``INCRBYFLOAT`` of one
key per day, expiring after two days).  When it reaches OPENROUTER_DAILY_BUDGET_USD the upstream is
paused for the whole fleet until the next UTC midnight (:meth:`RateLimiter.pause`, reason
``daily_budget``: counted in ``worker_upstream_pauses_total``, which the ``OpenRouterDailyBudgetReached``
alert watches), said once at CRITICAL, and the message waits: :class:`~ratelimiter.RateLimited` spends
no attempt and no time budget, so nothing is dead-lettered for it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis

from worker_service.errors import PermanentError
from worker_service.ratelimit import RateLimited, RateLimiter

logger = logging.getLogger(__name__)


class BudgetExceeded(PermanentError):
    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="budget_exceeded")


@dataclass
class AssetBudget:
    """Caps of one asset's extraction.

    Parameters: max_chunks (KNOWLEDGE_MAX_CHUNKS), max_cost_usd (KNOWLEDGE_MAX_COST_USD), spent_usd (what
    this generation of the asset's knowledge has already paid, in earlier deliveries).
    """

    max_chunks: int
    max_cost_usd: float
    spent_usd: float = 0.0

    def check_chunks(self, chunks: int) -> None:
        if chunks > self.max_chunks:
            raise BudgetExceeded(f"{chunks} chunks is more than KNOWLEDGE_MAX_CHUNKS={self.max_chunks}")

    def check_call(self) -> None:
        if self.spent_usd >= self.max_cost_usd:
            raise BudgetExceeded(
                f"spent ${self.spent_usd:.4f} of KNOWLEDGE_MAX_COST_USD=${self.max_cost_usd:g}"
            )

    def spend(self, usd: float) -> None:
        self.spent_usd += usd


def spend_key(namespace: str, upstream: str, day: datetime) -> str:
    """The Redis key of ``upstream``'s spend on ``day`` (UTC): read by the dashboard's metrics too."""
    return f"{namespace}:__spend__.{upstream}.{day:%Y-%m-%d}"


def _next_utc_midnight(now: datetime) -> datetime:
    return datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1)


class DailyBudget:
    """The fleet's spend on ``upstream`` per UTC day, and the pause when it reaches ``limit_usd``.

    Parameters: client (the rate limiter's Redis), limiter, upstream, limit_usd (None: no cap), namespace.
    """

    def __init__(
        self,
        client: redis.Redis,
        limiter: RateLimiter,
        upstream: str,
        limit_usd: float | None,
        *,
        namespace: str = "dramatiq",
    ) -> None:
        self.client = client
        self.limiter = limiter
        self.upstream = upstream
        self.limit_usd = limit_usd
        self.namespace = namespace

    def _key(self, now: datetime) -> str:
        return spend_key(self.namespace, self.upstream, now)

    def spent_today(self, now: datetime | None = None) -> float:
        value = self.client.get(self._key(now or datetime.now(UTC)))
        return float(value) if value else 0.0

    def spend(self, usd: float, now: datetime | None = None) -> None:
        if usd <= 0:
            return
        key = self._key(now or datetime.now(UTC))
        pipe = self.client.pipeline(transaction=True)
        pipe.incrbyfloat(key, usd)
        pipe.expire(key, 2 * 86_400)
        pipe.execute()

    def check(self, now: datetime | None = None) -> None:
        """Raise RateLimited (and pause the fleet until midnight UTC) once today's spend reached the cap."""
        if self.limit_usd is None:
            return
        now = now or datetime.now(UTC)
        spent = self.spent_today(now)
        if spent < self.limit_usd:
            return
        pause_ms = max(1_000, int((_next_utc_midnight(now) - now).total_seconds() * 1000))
        reason = f"daily_budget: spent ${spent:.4f} of OPENROUTER_DAILY_BUDGET_USD=${self.limit_usd:g} today"
        self.limiter.pause(self.upstream, pause_ms, reason, quiet=True)
        if self.client.set(
            f"{self._key(now)}.announced", "1", nx=True, ex=2 * 86_400
        ):  # once per day, fleet-wide
            self.limiter.count_pause(self.upstream, reason)
            logger.critical(
                "%s daily budget reached (%s); paused fleet-wide until %s UTC.",
                self.upstream,
                reason,
                _next_utc_midnight(now).isoformat(timespec="minutes"),
                extra={"alert": f"{self.upstream}_daily_budget", "spent_usd": round(spent, 6)},
            )
        raise RateLimited(self.upstream, pause_ms, paused=True)
