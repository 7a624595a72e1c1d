"""middleware.ratelimit: a paused upstream or a full concurrency limit defers the message, spending nothing."""

from __future__ import annotations

import pytest
from dramatiq.middleware import SkipMessage

from middleware.ratelimit import RateLimit
from tests.support.units import proxy, stub_broker
from worker_service.outcome import Deferred, outcome_of, successor_of


class FakeLimiter:
    """The part of ratelimiter.RateLimiter the middleware uses."""

    def __init__(self, paused_ms: int = 0, free_slots: int = 1) -> None:
        self.paused_ms, self.free_slots, self.released = paused_ms, free_slots, []

    def paused_for(self, upstream: str) -> int:
        return self.paused_ms

    def pause_reason(self, upstream: str) -> str:
        return "429 Retry-After"

    def lease(self, name: str, holder: str, limit: int, lease_ms: int) -> bool:
        self.free_slots -= 1
        return self.free_slots >= 0

    def release(self, name: str, holder: str) -> None:
        self.released.append(holder)


def test_a_paused_upstream_defers_the_message_past_the_pause():
    broker = stub_broker(llm={"rate_limit": "openrouter"})
    message = proxy("llm", retries=2)
    with pytest.raises(SkipMessage):
        RateLimit(FakeLimiter(paused_ms=30_000)).before_process_message(broker, message)  # type: ignore[arg-type]
    assert isinstance(outcome_of(message), Deferred) and not message.failed
    successor = successor_of(message)
    assert successor.delay_ms >= 30_000 and successor.message.options["retries"] == 2  # no attempt spent


def test_a_full_concurrency_limit_defers_and_a_held_lease_is_released():
    broker = stub_broker(capped={"concurrency_limit": 1})
    limiter = FakeLimiter(free_slots=1)
    middleware = RateLimit(limiter)  # type: ignore[arg-type]
    first, second = proxy("capped"), proxy("capped")
    middleware.before_process_message(broker, first)
    with pytest.raises(SkipMessage):
        middleware.before_process_message(broker, second)
    assert isinstance(outcome_of(second), Deferred)
    middleware.after_process_message(broker, first)
    assert len(limiter.released) == 1 and limiter.released[0].startswith(first.message_id)


def test_actors_without_limits_pass():
    message = proxy("noop")
    RateLimit(FakeLimiter(paused_ms=10_000)).before_process_message(stub_broker(noop={}), message)  # type: ignore[arg-type]
    assert outcome_of(message) is None
