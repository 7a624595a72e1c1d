"""Redis commands per message with N consumers of one queue, counted with INFO commandstats on a Redis that
nobody else uses (tests/integration/test_scale.py and ``python -m benchmarks scale``)."""

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
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import redis

from tests.support.helpers import free_port, unavailable, wait_for


@contextmanager
def private_redis(directory: Path) -> Iterator[redis.Redis]:
    """A redis-server nobody else talks to (its command counters are the caller's alone), killed on exit."""
    if not shutil.which("redis-server"):
        unavailable("redis-server is not installed (Debian: redis-server)")
    port = free_port()
    process = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(directory),
        ],
        stdout=subprocess.DEVNULL,
        start_new_session=True,
    )
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


@dataclass(frozen=True)
class Counts:
    per_message: float  # Redis commands per message, the sender's MULTI/HSET/RPUSH/EXEC included
    idle_per_consumer_s: float  # commands per idle consumer per second
    cpu_ms_per_message: float  # CPU of this process (the consumers, idle ones included) per message sent


def commands(client: redis.Redis) -> int:
    """Commands Redis ran since the last reset (commands inside scripts included), INFO itself left out."""
    return sum(int(v["calls"]) for k, v in client.info("commandstats").items() if k != "cmdstat_info")


def measure(
    client: redis.Redis,
    consumers: int,
    *,
    messages: int = 100,
    rate: float = 100.0,
    mark: bool = False,
    bare: bool = False,
) -> Counts:
    """``consumers`` consumers of one queue, each in a thread of its own as in worker processes, acking what they
    get; ``messages`` sent one by one at ``rate`` per second.  ``mark``: each is marked started before its ack,
    as a worker does before running the actor (the crash accounting).  ``bare``: Dramatiq's own RedisBroker
    instead (no mark: it has no crash accounting)."""
    from dramatiq.brokers.redis import RedisBroker

    from worker_service.brokers.redis import ReliableRedisBroker, make_connection_pool

    client.flushall()
    port = client.connection_pool.connection_kwargs["port"]
    pool = make_connection_pool(
        f"redis://127.0.0.1:{port}/0", socket_timeout=10, health_check_interval=0, connect_attempts=1
    )  # the workers' own pool: as many connections as threads
    broker_class = RedisBroker if bare else ReliableRedisBroker
    broker = broker_class(
        client=redis.Redis(connection_pool=pool),
        namespace="scale",
        heartbeat_timeout=60_000,
        maintenance_chance=0,
    )
    broker.declare_queue("scale")
    stop, done = threading.Event(), []

    def consume() -> None:
        consumer = broker.consume("scale", prefetch=2, timeout=1000)
        while not stop.is_set():
            message = next(consumer)
            if message is not None:
                if mark:
                    broker.mark_started(message)
                consumer.ack(message)
                done.append(message.message_id)
        consumer.close()

    threads = [threading.Thread(target=consume, daemon=True) for _ in range(consumers)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(2.0 + consumers / 500)  # every consumer waiting
        client.config_resetstat()
        started = time.monotonic()
        time.sleep(3.0)
        idle_s = time.monotonic() - started
        idle = commands(client) / idle_s
        client.config_resetstat()
        cpu, started = time.process_time(), time.monotonic()
        for _ in range(messages):
            redis_id = str(uuid.uuid4())
            body = {
                "queue_name": "scale",
                "actor_name": "noop",
                "args": [],
                "kwargs": {},
                "options": {"redis_message_id": redis_id},
                "message_id": str(uuid.uuid4()),
                "message_timestamp": int(time.time() * 1000),
            }
            pipe = client.pipeline()  # a sender's MULTI, HSET, RPUSH, EXEC: counted too
            pipe.hset("scale:scale.msgs", redis_id, json.dumps(body))
            pipe.rpush("scale:scale", redis_id)
            pipe.execute()
            time.sleep(1 / rate)
        wait_for(lambda: len(done) == messages, 60, 0.01, "every message consumed")
        if not bare:
            broker.flush_settles()
        elapsed = time.monotonic() - started
        total = commands(client) - idle * elapsed
        busy_cpu = time.process_time() - cpu
    finally:
        stop.set()
        for thread in threads:
            thread.join(5)
        broker.client.connection_pool.disconnect()
    assert client.hlen("scale:scale.msgs") == 0
    return Counts(total / messages, idle / consumers, busy_cpu * 1000 / messages)
