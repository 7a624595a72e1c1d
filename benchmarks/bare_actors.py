"""Bare Dramatiq (its default middleware, its RedisBroker) for side-by-side benchmarks."""

import os
import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker

_client = redis.Redis.from_url(os.environ["BROKER_URL"])

dramatiq.set_broker(RedisBroker(url=os.environ["BROKER_URL"]))


@dramatiq.actor(queue_name="bench")
def bench_noop(n: int) -> None:
    return None


@dramatiq.actor(queue_name="bench")
def latency_probe(sent_ms: float) -> None:
    _client.rpush("bench:latency", time.time() * 1000 - sent_ms)
