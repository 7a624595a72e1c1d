"""The Redis broker's hot path with real Redis: blocking idle waits, wake-on-room, settles, a Redis without
BLMOVE."""

from __future__ import annotations

import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis

from tests.support.helpers import free_port, unavailable, wait_for
from worker_service.brokers.redis import (
    ReliableRedisBroker,
    ReliableRedisConsumer,
    crash_count,
    make_connection_pool,
)
from worker_service.brokers.settle import Successor


@pytest.fixture()
def broker(redis_url: str, redis_client: redis.Redis) -> Iterator[ReliableRedisBroker]:
    # The 12 s socket timeout lets an idle consumer block for 5 s (half of it, capped by its timeout).
    client = redis.Redis(
        connection_pool=make_connection_pool(
            redis_url, socket_timeout=12, health_check_interval=0, connect_attempts=1
        )
    )
    broker = ReliableRedisBroker(client=client, middleware=[])
    broker.declare_queue("hot")
    yield broker
    broker.close()


def _enqueue(broker: ReliableRedisBroker, n: int) -> list[dramatiq.Message]:
    return [
        broker.enqueue(
            dramatiq.Message(queue_name="hot", actor_name="noop", args=(i,), kwargs={}, options={})
        )
        for i in range(n)
    ]


def test_marks_and_settles_from_many_threads_leave_nothing_held(broker, redis_client):
    _enqueue(broker, 64)
    consumer = broker.consume("hot", prefetch=64, timeout=1000)
    proxies = [next(consumer) for _ in range(64)]
    assert all(p is not None for p in proxies)
    acks_key = f"dramatiq:__acks__.{broker.broker_id}.hot"
    assert redis_client.scard(acks_key) == 64

    def work(chunk: list[Any]) -> None:
        for proxy in chunk:
            broker.mark_started(proxy)
            consumer.ack(proxy)

    threads = [threading.Thread(target=work, args=(proxies[i::8],)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert broker.batches.flush(10)
    assert redis_client.scard(acks_key) == 0
    assert redis_client.hlen("dramatiq:hot.msgs") == 0
    assert redis_client.scard(f"dramatiq:__started__.{broker.broker_id}.hot") == 0
    assert not broker.started_ids
    assert consumer.outstanding_message_count == 0
    consumer.close()


def test_broker_close_writes_the_settles_still_waiting_for_the_committer(broker, redis_client):
    _enqueue(broker, 16)
    consumer = broker.consume("hot", prefetch=16, timeout=1000)
    write = broker.batches.execute

    def slow_write(ops: list[Any]) -> list[int]:
        time.sleep(0.2)  # a slow round trip: the acks below return long before their settles are written
        return write(ops)

    broker.batches.execute = slow_write
    for proxy in [next(consumer) for _ in range(16)]:
        consumer.ack(proxy)
    assert redis_client.scard(f"dramatiq:__acks__.{broker.broker_id}.hot") > 0
    broker.close()  # Dramatiq's worker process calls it after Worker.stop
    assert redis_client.scard(f"dramatiq:__acks__.{broker.broker_id}.hot") == 0
    assert redis_client.hlen("dramatiq:hot.msgs") == 0


def test_settle_with_successor_enqueues_it_only_while_the_message_is_held(broker, redis_client):
    (original,) = _enqueue(broker, 1)
    consumer = broker.consume("hot", prefetch=1, timeout=1000)
    proxy = next(consumer)
    retry = original.copy(options={"retries": 1})
    assert broker.settle("hot", proxy.options["redis_message_id"], Successor(retry, delay_ms=None)) is True
    assert redis_client.llen("dramatiq:hot") == 1 and redis_client.hlen("dramatiq:hot.msgs") == 1
    # Settling again (the message was already handed on): no second successor.
    assert broker.settle("hot", proxy.options["redis_message_id"], Successor(retry, delay_ms=None)) is False
    assert redis_client.llen("dramatiq:hot") == 1
    consumer.close()


def test_a_mark_whose_reply_was_lost_still_lets_its_settle_enqueue_the_successor(broker, redis_client):
    """The mark moves the id from the acks set to the started set; when its reply is lost the process does not
    know it moved, and the settle must find it there anyway, or the retry would be dropped."""
    (original,) = _enqueue(broker, 1)
    consumer = broker.consume("hot", prefetch=1, timeout=1000)
    redis_id = next(consumer).options["redis_message_id"]
    started = f"dramatiq:__started__.{broker.broker_id}.hot"
    assert redis_client.smove(f"dramatiq:__acks__.{broker.broker_id}.hot", started, redis_id)
    assert redis_id not in broker.started_ids
    assert (
        broker.settle("hot", redis_id, Successor(original.copy(options={"retries": 1}), delay_ms=None))
        is True
    )
    assert redis_client.llen("dramatiq:hot") == 1 and redis_client.scard(started) == 0
    consumer.close()


def test_a_worker_death_renames_what_it_was_running_with_its_crash_count(broker, redis_client):
    """Crash counts travel in the Redis id ("<id>#crashes=<n>"), so a fetch reads no crash table; what the dead
    worker had only fetched goes back under its own id, with no crash counted."""
    _enqueue(broker, 2)
    consumer = broker.consume("hot", prefetch=2, timeout=1000)
    running, waiting = next(consumer), next(consumer)
    broker.mark_started(running)
    first = running.options["redis_message_id"]
    for crashes in (1, 2):
        redis_client.zadd("dramatiq:__heartbeats__", {broker.broker_id: 1})  # silent since 1970
        redis_client.sadd("dramatiq:__queues__", "hot")
        assert broker.recover_dead_workers()[0] == 1
        queued = [i.decode() for i in redis_client.lrange("dramatiq:hot", 0, -1)]
        # the first time, the one it had only fetched is back too (the second time it holds nothing else)
        assert queued == [f"{first}#crashes={crashes}"] + [waiting.options["redis_message_id"]] * (
            crashes == 1
        )
        assert redis_client.hexists("dramatiq:hot.msgs", f"{first}#crashes={crashes}")
        assert not redis_client.hexists("dramatiq:hot.msgs", first)
        broker.started_ids.clear()
        consumer.fetched, consumer.queued_message_ids, consumer.handed = [], set(), {}
        redis_client.delete("dramatiq:hot")
        redis_client.rpush("dramatiq:hot", f"{first}#crashes={crashes}")
        running = next(consumer)
        assert running.options["redis_message_id"] == f"{first}#crashes={crashes}"
        assert crash_count(running.options["redis_message_id"]) == crashes
        broker.mark_started(running)
    consumer.close()


def test_a_redis_without_lpop_count_is_fetched_from_one_id_at_a_time(broker, redis_client):
    """Redis < 6.2 refuses ``LPOP key count``; the script rolls back and the fetch pops one id at a time."""
    _enqueue(broker, 3)
    script = broker.reliable_scripts["fetch"]

    def old_redis(args: list[Any], client: Any = None) -> Any:
        if args[-1] == "1":
            raise redis.ResponseError(
                "ERR Error running script: wrong number of arguments for 'lpop' command"
            )
        return script(args=args, client=client)

    broker.reliable_scripts["fetch"] = old_redis
    assert len(broker.fetch("hot", 3)) == 6 and broker.pop_many is False


def test_waiting_takes_one_message_onto_the_landing_list_where_fetch_or_unland_finds_it(broker, redis_client):
    """The waiting consumer's message is never only in flight: it sits on the queue's landing list until the
    fetch takes it first, and a consumer that closes before fetching puts it back in front."""
    redis_client.rpush("dramatiq:hot", "a", "b", "c")
    redis_client.hset("dramatiq:hot.msgs", mapping={"a": "{}", "b": "{}", "c": "{}"})
    assert broker.wait_for_message("hot", 5) == "a"  # at once: the queue is not empty
    assert redis_client.lrange("dramatiq:hot", 0, -1) == [b"b", b"c"]
    assert redis_client.lrange(broker.landing_key("hot"), 0, -1) == [b"a"]
    assert broker.unland("hot", ["a"]) == 1 and broker.unland("hot", ["a"]) == 0  # at most once
    assert redis_client.lrange("dramatiq:hot", 0, -1) == [b"a", b"b", b"c"]
    assert broker.wait_for_message("hot", 5) == "a"
    fetched = broker.fetch("hot", 2, landed="a")
    assert [fetched[0], fetched[2]] == [b"a", b"b"] and redis_client.lrange("dramatiq:hot", 0, -1) == [b"c"]
    assert redis_client.llen(broker.landing_key("hot")) == 0


def test_more_than_a_hundred_threads_can_wait_at_once(broker):
    """Regression: redis-py 8 caps a pool at 100 connections and raises "Too many connections" past it (seen
    with 1,000 consumers); the broker's pool allows as many as Redis does."""
    errors: list[BaseException] = []

    def wait() -> None:
        try:
            broker.wait_for_message("empty", 1)
        except BaseException as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(exc)

    threads = [threading.Thread(target=wait) for _ in range(150)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []


def test_an_id_left_on_a_landing_list_goes_back_after_two_maintenance_rounds_whoever_left_it(
    broker, redis_client
):
    """A worker killed between its wait and its fetch, even one whose heartbeat is gone (a flushed or failed-over
    Redis): any live process's maintenance puts the id back; one a fetch takes meanwhile is never put back."""
    consumer = broker.consume("hot", prefetch=2, timeout=1000)  # this process consumes the queue
    redis_client.rpush("dramatiq:hot", "a", "b")
    redis_client.hset("dramatiq:hot.msgs", mapping={"a": "{}", "b": "{}"})
    assert broker.wait_for_message("hot", 5) == "a"  # and the consumer that waited dies here
    assert broker.recover_dead_workers() == (0, 0)  # seen once: a fetch may still come
    assert broker.wait_for_message("hot", 5) == "b"  # a live consumer's, fetched before the next round
    assert broker.recover_dead_workers() == (0, 1)  # "a" seen twice: back in front
    assert redis_client.lrange("dramatiq:hot", 0, -1) == [b"a"]
    assert broker.fetch("hot", 1, landed="b")[0] == b"b"
    assert broker.recover_dead_workers() == (0, 0) and redis_client.llen(broker.landing_key("hot")) == 0
    consumer.close()


def test_idle_consumer_blocks_in_redis_and_wakes_when_a_message_arrives(broker, redis_client):
    consumer = broker.consume("hot", prefetch=8, timeout=10_000)
    assert isinstance(consumer, ReliableRedisConsumer) and consumer.block_s >= 5
    received: list[tuple[float, Any]] = []

    def consume() -> None:
        for proxy in consumer:
            if proxy is not None:
                received.append((time.monotonic(), proxy))
                return

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        if any(c.get("cmd") == "blmove" for c in redis_client.client_list()):
            break
        time.sleep(0.01)
    else:
        pytest.fail("the idle consumer is not blocked in Redis")
    sent_at = time.monotonic()
    (message,) = _enqueue(broker, 1)
    thread.join(5)
    assert received, "the blocked consumer did not wake"
    # A sleeping consumer would have slept out its 5 s block; waking takes a round trip or two.
    assert received[0][0] - sent_at < 2.5
    assert received[0][1].message_id == message.message_id
    consumer.close()


def test_redis_without_blmove_is_polled_instead(tmp_path):
    if not shutil.which("redis-server"):
        unavailable("redis-server not installed")
    port = free_port()
    server = subprocess.Popen(
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
            "--rename-command",
            "BLMOVE",
            "",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        url = f"redis://127.0.0.1:{port}/0"
        wait_for(lambda: _pings(url), 10, what="redis-server without BLMOVE")
        broker = ReliableRedisBroker(url=url, middleware=[], idle_poll_ms=20)
        broker.declare_queue("hot")
        consumer = broker.consume("hot", prefetch=8, timeout=1000)
        assert next(consumer) is None and broker.can_block is False
        (message,) = _enqueue(broker, 1)
        got = wait_for(lambda: next(consumer), 5, interval=0, what="the polled message")
        assert got.message_id == message.message_id
        consumer.close()
        broker.close()
    finally:
        server.terminate()
        server.wait(10)


def _pings(url: str) -> bool:
    try:
        return bool(redis.Redis.from_url(url, socket_timeout=1).ping())
    except redis.RedisError:
        return False


@pytest.mark.parametrize("release", ["ack", "nack"])
def test_consumer_with_full_prefetch_wakes_as_soon_as_settles_make_room(broker, release):
    _enqueue(broker, 6)
    consumer = broker.consume("hot", prefetch=4, timeout=10_000)
    held = [next(consumer) for _ in range(4)]
    assert consumer.outstanding_message_count == 4 and consumer.refill_at == 1
    got: list[Any] = []

    def next_message() -> None:
        while True:
            proxy = next(consumer)
            if proxy is not None:
                got.append((time.monotonic(), proxy))
                return

    thread = threading.Thread(target=next_message, daemon=True)
    thread.start()
    time.sleep(0.3)
    assert not got, "fetched beyond its prefetch"
    acked_at = time.monotonic()
    getattr(consumer, release)(held[0])  # nack: Dramatiq's own path, this broker has no dead-letter sink
    thread.join(5)
    assert got and got[0][0] - acked_at < 2.5, "did not wake on the settle (its room wait is 10 s)"
    consumer.close()


def test_closing_consumer_gives_back_what_it_fetched_but_never_handed_out(broker, redis_client):
    # Regression (CI, stop 13): a consumer stopped with fetched-but-unreturned messages left them in
    # the acks set of an exited worker; they came back only after its heartbeat expired.
    _enqueue(broker, 8)
    consumer = broker.consume("hot", prefetch=8, timeout=1000)
    handed_out = next(consumer)
    acks_key = f"dramatiq:__acks__.{broker.broker_id}.hot"
    assert redis_client.scard(acks_key) == 8 and redis_client.llen("dramatiq:hot") == 0
    consumer.close()
    assert redis_client.llen("dramatiq:hot") == 7
    # The message a thread got is the worker's to finish or requeue, never given back behind its back.
    assert redis_client.smembers(acks_key) == {handed_out.options["redis_message_id"].encode()}
    consumer.requeue([handed_out])
    assert redis_client.scard(acks_key) == 0 and redis_client.llen("dramatiq:hot") == 8


def test_closing_delay_queue_consumer_gives_back_delayed_messages_still_held(broker, redis_client):
    # Dramatiq's consumer thread drops its in-memory delay queue on a connection error and restarts
    # the consumer; without a give-back those messages stay held by this live worker until it dies.
    for i in range(3):
        broker.enqueue(
            dramatiq.Message(queue_name="hot", actor_name="noop", args=(i,), kwargs={}, options={}),
            delay=3_600_000,
        )
    consumer = broker.consume("hot.DQ", prefetch=100, timeout=1000)
    held = [next(consumer) for _ in range(3)]
    assert all(h is not None for h in held)
    consumer.ack(held[0])  # its eta passed and it moved on: settled, nothing to give back
    consumer.close()
    assert broker.batches.flush(10)  # the ack is written by the committer
    assert redis_client.scard(f"dramatiq:__acks__.{broker.broker_id}.hot.DQ") == 0
    assert sorted(redis_client.lrange("dramatiq:hot.DQ", 0, -1)) == sorted(
        h.options["redis_message_id"].encode() for h in held[1:]
    )


def test_give_back_during_a_broker_outage_is_retried_by_the_next_consumer(redis_url, redis_client):
    from urllib.parse import urlsplit

    from tests.support.tcpproxy import TcpProxy

    parts = urlsplit(redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    client = redis.Redis(
        connection_pool=make_connection_pool(
            f"redis://127.0.0.1:{proxy.port}{parts.path}",
            socket_timeout=2,
            health_check_interval=0,
            connect_attempts=1,
        )
    )
    broker = ReliableRedisBroker(client=client, middleware=[])
    broker.declare_queue("hot")
    try:
        _enqueue(broker, 4)
        consumer = broker.consume("hot", prefetch=4, timeout=1000)
        handed_out = next(consumer)
        held = {m.decode() for m in redis_client.smembers(f"dramatiq:__acks__.{broker.broker_id}.hot")}
        proxy.cut()
        consumer.close()  # Redis unreachable: kept as orphans, not forgotten
        assert broker.orphans == {"hot": held - {handed_out.options["redis_message_id"]}}
        assert len(broker.orphans["hot"]) == 3
        proxy.start()
        after = broker.consume("hot", prefetch=8, timeout=1000)
        got = [next(after) for _ in range(3)]  # the three given back, fetched again
        assert all(g is not None for g in got) and broker.orphans == {}
        after.close()
    finally:
        proxy.cut()
        broker.close()
