"""RabbitMQ drain on quorum and on classic queues, side by side on one private node (tests/support/rabbitmq.py)."""

from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis

from benchmarks.common import BIN, REDIS_URL, ROOT, worker_env
from tests.support.rabbitmq import broker_for

N = 5_000
WARM_UP = 200


def _send(broker: Any, count: int, start: int = 0) -> None:
    from dramatiq.message import Message

    for i in range(start, start + count):
        broker.enqueue(
            Message(
                queue_name="tests",
                actor_name="noop",
                args=(),
                kwargs={"tag": f"b{i}"},
                options={},
                message_id=str(uuid.uuid4()),
                message_timestamp=int(time.time() * 1000),
            )
        )


def _drain(url: str, queue_type: str, tmp: str) -> tuple[float, float]:
    """(consume msg/s of warm workers, publish msg/s with confirms).  The N messages are published while the
    queue is paused (its consumers unsubscribed); the consume rate runs from the first message done after the
    resume to the last."""
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    env = worker_env(
        tmp,
        BROKER_URL=url,
        RABBITMQ_QUEUE_TYPE=queue_type,
        RATELIMIT_REDIS_URL=REDIS_URL,
        TEST_RECORD_URL=REDIS_URL,
    )
    worker = subprocess.Popen(
        [
            str(BIN / "dramatiq"),
            "tests.support.worker_actors",
            "--processes",
            "1",
            "--threads",
            "8",
            "--queues",
            "tests",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    broker = broker_for(env)
    try:
        deadline = time.monotonic() + 300

        def wait_done(count: int) -> None:
            while client.llen("bench:done") < count and time.monotonic() < deadline and worker.poll() is None:
                time.sleep(0.005)

        _send(broker, WARM_UP)
        wait_done(WARM_UP)
        client.delete("bench:done")
        client.sadd("dramatiq:__paused_queues__", "tests")
        time.sleep(2.5)  # every consumer has unsubscribed
        started = time.monotonic()
        _send(broker, N, WARM_UP)
        published = time.monotonic() - started
        client.srem("dramatiq:__paused_queues__", "tests")
        wait_done(1)
        first_done = time.monotonic()
        wait_done(N)
        elapsed = time.monotonic() - first_done
    finally:
        broker.close()
        worker.terminate()
        _, stderr = worker.communicate(timeout=60)
    if client.llen("bench:done") < N:
        raise RuntimeError(
            f"{queue_type}: {client.llen('bench:done')} of {N} done\n"
            f"{stderr.decode(errors='replace')[-3000:]}"
        )
    return (N - 1) / elapsed, N / published


def drain_by_queue_type() -> list[dict[str, Any]]:
    """RabbitMQ: consume 5k queued no-op messages (1x8) and publish them (confirms), quorum vs classic, alternating."""
    from tests.support.rabbitmq import RabbitCluster

    rates: dict[str, list[float]] = {"quorum": [], "classic": []}
    publish: dict[str, list[float]] = {"quorum": [], "classic": []}
    with tempfile.TemporaryDirectory() as tmp:
        node = RabbitCluster(Path(tmp) / "rabbit")
        try:
            for round_no in range(4):
                kind = ("quorum", "classic")[round_no % 2]
                vhost = f"bench-{kind}-{round_no}"
                node.add_vhost(vhost)
                drain, sent = _drain(node.url(vhost=vhost), kind, tmp)
                rates[kind].append(drain)
                publish[kind].append(sent)
        finally:
            node.close()
    quorum, classic = statistics.median(rates["quorum"]), statistics.median(rates["classic"])
    return [
        {
            "benchmark": "rabbitmq",
            "variant": "consume, classic queues",
            "value": round(classic),
            "unit": "msg/s",
            "runs": [round(r) for r in rates["classic"]],
            "notes": f"publish {round(statistics.median(publish['classic']))} msg/s",
        },
        {
            "benchmark": "rabbitmq",
            "variant": "consume, quorum queues",
            "value": round(quorum),
            "unit": "msg/s",
            "runs": [round(r) for r in rates["quorum"]],
            "ratio": round(quorum / classic, 3),
            "notes": f"publish {round(statistics.median(publish['quorum']))} msg/s",
        },
    ]
