"""Bare Dramatiq (its default middleware, its RedisBroker) for side-by-side benchmarks."""

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

dramatiq.set_broker(RedisBroker(url=os.environ["BROKER_URL"]))


@dramatiq.actor(queue_name="bench")
def bench_noop(n: int) -> None:
    return None
