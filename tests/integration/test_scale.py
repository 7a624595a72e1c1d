"""Redis work per message does not grow with the number of idle consumers (no thundering herd), and an idle
consumer costs about one command a second: counted with INFO commandstats on a redis-server of the test's own."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.helpers import free_port, unavailable, wait_for


@pytest.fixture()
def private_redis(tmp_path: Path) -> Iterator[redis.Redis]:
    """A redis-server nobody else talks to: its command counters are this test's alone."""
    if not shutil.which("redis-server"):
        unavailable("redis-server is not installed (Debian: redis-server)")
    port = free_port()
    process = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                "--appendonly", "no", "--dir", str(tmp_path)], stdout=subprocess.DEVNULL,
                               start_new_session=True)
    client = redis.Redis(port=port, socket_timeout=10)

    def answers() -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    try:
        wait_for(answers, 20, 0.05, "redis-server")
        yield client
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def _commands(client: redis.Redis) -> int:
    """Commands Redis ran since the last reset (commands inside scripts included), this INFO left out."""
    return sum(int(v["calls"]) for k, v in client.info("commandstats").items() if k != "cmdstat_info")


def _per_message(client: redis.Redis, consumers: int, messages: int = 100) -> tuple[float, float]:
    """(Redis commands per message sent one by one, idle commands per consumer per second) with ``consumers``
    consumers of one queue, each in a thread of its own as in a worker process, acking what it gets."""
    from worker_service.brokers.redis import ReliableRedisBroker

    client.flushall()
    broker = ReliableRedisBroker(client=client, namespace="scale", heartbeat_timeout=60_000)
    broker.declare_queue("scale")
    stop, done = threading.Event(), []

    def consume() -> None:
        consumer = broker.consume("scale", prefetch=2, timeout=1000)
        while not stop.is_set():
            message = next(consumer)
            if message is not None:
                consumer.ack(message)
                done.append(message.message_id)
        consumer.close()

    threads = [threading.Thread(target=consume, daemon=True) for _ in range(consumers)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2.0)  # every consumer waiting
        client.config_resetstat()
        time.sleep(3.0)
        idle = _commands(client) / 3.0 / consumers
        client.config_resetstat()
        started = time.monotonic()
        for _ in range(messages):
            redis_id = str(uuid.uuid4())
            body = {"queue_name": "scale", "actor_name": "noop", "args": [], "kwargs": {},
                    "options": {"redis_message_id": redis_id}, "message_id": str(uuid.uuid4()),
                    "message_timestamp": int(time.time() * 1000)}
            pipe = client.pipeline()  # a sender's MULTI, HSET, RPUSH, EXEC: counted too
            pipe.hset("scale:scale.msgs", redis_id, json.dumps(body))
            pipe.rpush("scale:scale", redis_id)
            pipe.execute()
            time.sleep(0.01)
        wait_for(lambda: len(done) == messages, 30, 0.01, "every message consumed")
        broker.flush_settles()
        total = _commands(client) - idle * consumers * (time.monotonic() - started)
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
    assert client.hlen("scale:scale.msgs") == 0
    return total / messages, idle


def test_fifty_idle_consumers_cost_no_more_per_message_than_one(private_redis):
    """Measured before the landing lists: ~198 commands per message with 50 idle consumers (every waiting
    consumer woke for every message, and all but one fetched nothing), ~3.8 per idle consumer per second."""
    one, idle_one = _per_message(private_redis, 1)
    fifty, idle_fifty = _per_message(private_redis, 50)
    print(f"\nRedis commands per message (sender's included): 1 consumer {one:.1f}, 50 consumers {fifty:.1f}; "
          f"idle per consumer per second: {idle_one:.2f}, {idle_fifty:.2f}")
    assert fifty <= one * 1.3 + 1, (one, fifty)
    assert fifty <= 17, fifty  # sender 4 + wait 1 + fetch 6 + settle 5, and a little slack
    assert idle_fifty <= 1.5, idle_fifty
