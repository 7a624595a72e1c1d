"""BROKER_SHARDS: a queue on a Redis of its own, with real worker processes: messages sent across shards land
on the queue's Redis, a worker killed -9 there is recovered there, and the dashboard's numbers, ``worker send``
and ``worker check`` read the right server."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.support.commandcount import private_redis
from tests.support.helpers import run_cli, wait_for


@pytest.fixture()
def shard(tmp_path: Path) -> Iterator[redis.Redis]:
    with private_redis(tmp_path) as client:
        yield client


def _url(client: redis.Redis) -> str:
    return f"redis://127.0.0.1:{client.connection_pool.connection_kwargs['port']}/0"


def _quick_client(url: str) -> redis.Redis:
    """A client as the broker's (its pool), giving up quickly: the shard tests cut it off."""
    from worker_service.brokers.redis import make_connection_pool

    return redis.Redis(
        connection_pool=make_connection_pool(
            url, socket_timeout=2, health_check_interval=0, connect_attempts=1
        )
    )


def _keys(client: redis.Redis, pattern: str) -> set[str]:
    return {k.decode() for k in client.scan_iter(pattern)}


def test_a_queue_on_its_own_redis_gets_its_messages_there_and_is_recovered_there(
    worker_env, start_worker, sender, redis_client, shard
):
    from worker_service.brokers.redis import ReliableRedisBroker
    from worker_service.web.metrics import queue_stats

    env = {
        **worker_env,
        "BROKER_SHARDS": f"tests_far={_url(shard)}",
        "HEARTBEAT_TIMEOUT_MS": "2000",
        "MAINTENANCE_INTERVAL_MS": "300",
    }
    redis_client.set("wtest:hold", 1)
    first = start_worker(env=env, modules=("tests.support.shard_actors",), threads=4)
    tags = [f"s{i}" for i in range(6)]
    for tag in tags:
        sender("relay", tag=tag)  # onto BROKER_URL's Redis; relay sends far onto the shard
    wait_for(lambda: redis_client.llen("wtest:started") == 4, 30, 0.05, "4 far messages running")

    # Every key of tests_far is on the shard; BROKER_URL's Redis has none, and keeps what is fleet-wide.
    assert shard.hlen("dramatiq:tests_far.msgs") == 6
    assert not _keys(redis_client, "dramatiq:tests_far*") and not _keys(redis_client, "dramatiq:__*tests_far")
    assert _keys(shard, "dramatiq:__started__.*.tests_far") and shard.zcard("dramatiq:__heartbeats__") == 1
    assert b"tests_far" in shard.smembers("dramatiq:__queues__")
    assert redis_client.hlen("dramatiq:__workers__") == 1 and not _keys(shard, "dramatiq:__workers__")
    stats = {row["name"]: row for row in queue_stats(redis_client, "dramatiq", {"tests_far": shard})}
    assert stats["tests_far"]["depth"] + stats["tests_far"]["in_flight"] == 6 and stats["tests"]["depth"] == 0

    first.kill_tree()  # four running, two prefetched or waiting: all held on the shard
    time.sleep(2.2)  # past HEARTBEAT_TIMEOUT_MS: recovery, run here, finds the dead worker on the shard
    recovery = ReliableRedisBroker(client=redis_client, shards={"tests_far": shard}, heartbeat_timeout=2000)
    assert recovery.recover_dead_workers() == (1, 6)
    back = [i.decode() for i in shard.lrange("dramatiq:tests_far", 0, -1)]
    assert len(back) == 6 and sum(i.endswith("#crashes=1") for i in back) == 4  # the four that were running
    redis_client.delete("wtest:hold")
    start_worker(env=env, modules=("tests.support.shard_actors",), threads=4)
    wait_for(
        lambda: {t.decode() for t in redis_client.lrange("wtest:done", 0, -1)} == set(tags),
        60,
        0.2,
        "every far message done after the kill",
    )
    wait_for(lambda: shard.hlen("dramatiq:tests_far.msgs") == 0, 10, 0.1, "the shard settled")
    assert not _keys(redis_client, "dramatiq:tests_far*")


def test_worker_send_and_check_reach_the_queue_s_own_redis(worker_env, redis_client, shard, tmp_path):
    env = {**worker_env, "BROKER_SHARDS": f"knowledge={_url(shard)}"}
    sent = run_cli(env, "send", "extract_knowledge", json.dumps({"asset_id": "a-1"}))
    assert sent.returncode == 0, sent.stderr
    assert shard.llen("dramatiq:knowledge") == 1 and redis_client.llen("dramatiq:knowledge") == 0
    sent = run_cli(env, "send", "process_asset", json.dumps({"asset_id": "a-2", "source": "file:a.txt"}))
    assert sent.returncode == 0, sent.stderr
    assert redis_client.llen("dramatiq:assets") == 1 and shard.llen("dramatiq:assets") == 0
    checked = run_cli(env, "check")
    assert f"shard: queue knowledge on {_url(shard)}" in checked.stdout
    shard.shutdown(nosave=True)
    time.sleep(0.2)
    checked = run_cli(env, "check")
    assert checked.returncode == 1 and "the Redis of queue knowledge (BROKER_SHARDS)" in checked.stdout, (
        checked.stdout
    )


def test_a_shard_that_is_down_holds_up_only_its_own_settles(redis_url, redis_client, shard):
    """Each Redis has its own group committer: while the shard is cut off its settles are retried, and the
    settles of BROKER_URL's queues go through meanwhile (with one committer they would fail in the same batches);
    once it is back, its own are written."""
    import dramatiq

    from tests.support.tcpproxy import TcpProxy
    from worker_service.brokers.redis import ReliableRedisBroker

    proxy = TcpProxy("127.0.0.1", shard.connection_pool.connection_kwargs["port"]).start()
    broker = ReliableRedisBroker(
        client=_quick_client(redis_url),
        middleware=[],
        shards={"far": _quick_client(f"redis://127.0.0.1:{proxy.port}/0")},
    )
    consumers = {}
    for queue in ("hot", "far"):
        broker.declare_queue(queue)
        broker.enqueue(dramatiq.Message(queue_name=queue, actor_name="noop", args=(), kwargs={}, options={}))
        consumers[queue] = broker.consume(queue, prefetch=1, timeout=1000)
    got = {queue: next(consumer) for queue, consumer in consumers.items()}
    assert shard.hlen("dramatiq:far.msgs") == 1 and redis_client.hlen("dramatiq:hot.msgs") == 1
    try:
        proxy.cut()
        consumers["far"].ack(got["far"])  # cannot be written now: retried
        consumers["hot"].ack(got["hot"])
        assert broker.batches.flush(5) and redis_client.hlen("dramatiq:hot.msgs") == 0
        assert not broker.batches_for("far").flush(1) and shard.hlen("dramatiq:far.msgs") == 1
    finally:
        proxy.start()  # back on the same port
    assert broker.batches_for("far").flush(20) and shard.hlen("dramatiq:far.msgs") == 0
    for consumer in consumers.values():
        consumer.close()
    broker.close()
    proxy.cut()


def test_a_shard_out_of_reach_stops_none_of_the_others_maintenance(redis_url, redis_client, shard):
    """While a shard is cut off, heartbeats, the registry, the master check and recovery go on for BROKER_URL's
    queues; once it is back after more than the heartbeat timeout, nobody is judged dead on it for one more
    timeout (the live workers' heartbeats stopped reaching it too), then its dead worker's message comes back."""
    from tests.support.tcpproxy import TcpProxy
    from worker_service.brokers.redis import ReliableRedisBroker

    def dead_worker_holding_one(server: redis.Redis, queue: str) -> None:
        server.zadd("dramatiq:__heartbeats__", {"dead-1": 1})
        server.sadd("dramatiq:__queues__", queue)
        server.hset(f"dramatiq:{queue}.msgs", "m", "{}")
        server.sadd(f"dramatiq:__acks__.dead-1.{queue}", "m")

    proxy = TcpProxy("127.0.0.1", shard.connection_pool.connection_kwargs["port"]).start()
    broker = ReliableRedisBroker(
        client=_quick_client(redis_url),
        middleware=[],
        heartbeat_timeout=1000,
        shards={"far": _quick_client(f"redis://127.0.0.1:{proxy.port}/0")},
    )
    for queue in ("hot", "far"):
        broker.declare_queue(queue)
    dead_worker_holding_one(redis_client, "hot")
    dead_worker_holding_one(shard, "far")
    try:
        proxy.cut()
        broker.heartbeat()
        broker.register_queues()
        assert broker.master_identity().endswith(",out of reach") and broker.reconcile_held() == 0
        assert broker.recover_dead_workers() == (1, 1) and redis_client.lrange("dramatiq:hot", 0, -1) == [
            b"m"
        ]
        time.sleep(1.2)  # out of reach longer than the heartbeat timeout
    finally:
        proxy.start()
    broker.heartbeat()
    assert broker.recover_dead_workers() == (0, 0) and shard.llen("dramatiq:far") == 0
    for _ in range(2):  # maintenance rounds more often than the heartbeat timeout, as in a worker
        time.sleep(0.6)
        broker.heartbeat()
    assert broker.recover_dead_workers() == (1, 1) and shard.lrange("dramatiq:far", 0, -1) == [b"m"]
    broker.close()
    proxy.cut()
