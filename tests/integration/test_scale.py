"""Redis work per message does not grow with the number of idle consumers (no thundering herd), and an idle
consumer costs about one command a second: counted with INFO commandstats on a redis-server of the test's own."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.commandcount import measure, private_redis


@pytest.fixture()
def redis_of_its_own(tmp_path: Path) -> Iterator[redis.Redis]:
    with private_redis(tmp_path) as client:
        yield client


def test_fifty_idle_consumers_cost_no_more_per_message_than_one(redis_of_its_own):
    """Measured before the landing lists: ~198 commands per message with 50 idle consumers (every waiting
    consumer woke for every message, and all but one fetched nothing), ~3.8 per idle consumer per second."""
    one, fifty = measure(redis_of_its_own, 1), measure(redis_of_its_own, 50)
    print(f"\nRedis commands per message (sender's included): 1 consumer {one.per_message:.1f}, 50 consumers "
          f"{fifty.per_message:.1f}; idle per consumer per second: {one.idle_per_consumer_s:.2f}, "
          f"{fifty.idle_per_consumer_s:.2f}")
    assert fifty.per_message <= one.per_message * 1.3 + 1, (one, fifty)
    assert fifty.per_message <= 17, fifty  # sender 4 + wait 1 + fetch 6 + settle 5, and a little slack
    assert fifty.idle_per_consumer_s <= 1.5, fifty
