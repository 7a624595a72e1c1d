"""Distributed rate limiting: GCRA slots, fleet-wide pauses, concurrency leases, budget-free deferral."""

from __future__ import annotations

import threading
import time

import pytest
import redis

from tests.support.helpers import run_cli, wait_for
from worker_service.ratelimit import Limit, RateLimited, RateLimiter


@pytest.fixture()
def limiter(redis_client: redis.Redis) -> RateLimiter:
    return RateLimiter(
        redis_client,
        {"up": Limit(rate=50, burst=1), "burst": Limit(rate=5, burst=3)},
        namespace="wtest",
        max_wait_ms=2000,
    )


def test_slots_are_never_faster_than_the_rate_across_threads(limiter: RateLimiter):
    started = time.monotonic()
    threads = [threading.Thread(target=lambda: [limiter.slot("up") for _ in range(10)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 40 slots at 50/s with burst 1: the last one is granted no sooner than 39 intervals after the first
    assert time.monotonic() - started >= 39 / 50


def test_burst_then_spacing(limiter: RateLimiter):
    grants = [limiter.try_acquire("burst")[0] for _ in range(5)]
    assert grants == [True, True, True, False, False]


def test_the_rate_used_counts_every_grant_of_the_last_minute_and_no_refusal(
    limiter: RateLimiter, redis_client: redis.Redis
):
    assert sum(limiter.try_acquire("burst")[0] for _ in range(5)) == 3  # the burst of 3 granted, two refused
    for _ in range(9):
        limiter.slot("up")  # granted, waiting for its turn when it must (or RateLimited)
    last_bucket = int(redis_client.time()[0]) // 10  # the grants are in this 10 s bucket or the one before
    wait_for(lambda: int(redis_client.time()[0]) // 10 > last_bucket, 12, 0.2, "the 10 s bucket closed")
    reader = RateLimiter(redis_client, {}, namespace="wtest")  # another process's view, as the dashboard's
    assert reader.rate_used("burst") == pytest.approx(3 / 60)
    assert reader.rate_used("up") == pytest.approx(9 / 60)
    assert reader.rate_used("up", seconds=20) == pytest.approx(9 / 20)


def test_pause_is_fleet_wide_and_raises_without_waiting(limiter: RateLimiter, redis_client: redis.Redis):
    other_process_view = RateLimiter(
        redis.Redis(connection_pool=redis_client.connection_pool), limiter.limits, namespace="wtest"
    )
    limiter.pause("up", 1500, "429 Retry-After: 1.5")
    with pytest.raises(RateLimited) as info:
        other_process_view.slot("up")
    assert info.value.paused and info.value.spends_attempt is False
    assert 0 < other_process_view.paused_for("up") <= 1500
    assert other_process_view.pause_reason("up") == "429 Retry-After: 1.5"


def test_killed_concurrency_holder_slot_comes_back_after_its_lease(limiter: RateLimiter):
    assert limiter.lease("job", "holder-killed", limit=1, lease_ms=500)
    assert not limiter.lease(
        "job", "holder-2", limit=1, lease_ms=500
    )  # full; the first holder never releases
    time.sleep(0.6)
    assert limiter.lease("job", "holder-2", limit=1, lease_ms=500)


def test_paused_upstream_defers_messages_without_spending_attempts(
    worker_env, start_worker, sender, redis_client
):
    """Messages of a paused upstream wait (deferred, put back) and run after the pause with no attempt spent
    (limited_call allows 2: deferrals that spent attempts would dead-letter them)."""
    import json

    from worker_service.ratelimit import RateLimiter as Limiter

    env = {**worker_env, "KOMMO_RPS": "20"}
    start_worker(env=env)
    sender("noop", tag="up")
    wait_for(lambda: redis_client.lrange("wtest:done", 0, -1) == [b"up"], 60, what="the worker consuming")
    pause_s = 3.0
    paused_at = time.time()
    Limiter(redis_client, {"kommo": Limit(20)}).pause("kommo", int(pause_s * 1000), "test pause")
    for i in range(5):
        sender("limited_call", tag=f"r{i}")
    wait_for(lambda: redis_client.llen("wtest:ran") == 5, 30, what="messages after the pause")
    ran = [json.loads(r) for r in redis_client.lrange("wtest:ran", 0, -1)]
    assert all(r["at"] >= paused_at + pause_s - 0.05 for r in ran), ran  # nothing ran while paused
    assert all(r["retries"] == 0 for r in ran), ran  # no attempt spent
    assert all(r["deferrals"] >= 1 for r in ran), ran  # each one waited, put back, not slept on
    assert run_cli(env, "dlq", "list", "--json").stdout.strip() == "[]"


def test_the_metrics_say_which_upstream_is_paused_and_which_for_its_credentials(redis_client: redis.Redis):
    from worker_service.web.metrics import BrokerCollector

    limiter = RateLimiter(redis_client, {}, namespace="wtest")
    limiter.pause("kommo", 5000, "401: the long-lived token was rejected", quiet=True)
    limiter.pause("openrouter", 5000, "429 Retry-After: 5", quiet=True)
    gauges = {
        (m.name, s.labels["upstream"]): s.value
        for m in BrokerCollector(None, "wtest", spend_client=redis_client).collect()
        if m.name in ("worker_upstream_paused", "worker_upstream_auth_failed")
        for s in m.samples
    }
    assert gauges == {
        ("worker_upstream_paused", "openrouter"): 1,
        ("worker_upstream_paused", "kommo"): 1,
        ("worker_upstream_auth_failed", "openrouter"): 0,
        ("worker_upstream_auth_failed", "kommo"): 1,
    }
