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
    consumer woke for every message, and all but one fetched nothing), ~3.8 per idle consumer per second; 15 with
    one consumer before crash counts moved into the ids, settles without a successor became plain commands and a
    fetch after a wait that blocked stopped looking for more (12 before that last step)."""
    one, fifty = measure(redis_of_its_own, 1), measure(redis_of_its_own, 50)
    marked = measure(redis_of_its_own, 1, mark=True)
    print(
        f"\nRedis commands per message (sender's included): 1 consumer {one.per_message:.1f}, 50 consumers "
        f"{fifty.per_message:.1f}, 1 consumer marking each started {marked.per_message:.1f}; idle per consumer "
        f"per second: {one.idle_per_consumer_s:.2f}, {fifty.idle_per_consumer_s:.2f}"
    )
    assert fifty.per_message <= one.per_message * 1.3 + 1, (one, fifty)
    # sender 4 (MULTI HSET RPUSH EXEC) + wait 1 (BLMOVE) + fetch 4 (EVALSHA LREM SADD HMGET: after a wait that
    # blocked, no LPOP) + settle 2 (HDEL SREM), with a tenth of slack for a message that found its consumer busy
    assert one.per_message <= 11.1 and fifty.per_message <= 11.1, (one, fifty)
    assert marked.per_message <= 12.1, marked  # a worker marks each message started: one SMOVE more
    # back to back, each consumer's wait returns at once and its fetch also looks for more: still <= 12
    burst = measure(redis_of_its_own, 4, messages=1000, rate=float("inf"))
    assert burst.per_message <= 12.5, burst
    assert fifty.idle_per_consumer_s <= 1.5, fifty
