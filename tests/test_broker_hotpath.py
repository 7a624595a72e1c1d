"""The broker's hot path: group commit, blocking idle waits, wake-on-room, hook dispatch.

These are the changes behind the drain and latency numbers in docs/performance.rst; each test
provokes the behaviour against real Redis (db 11) and real threads, and asserts outcomes, not speed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, MiddlewareError

from tests.support.helpers import free_port, wait_for
from worker_service.brokers.groupcommit import GroupCommit
from worker_service.brokers.hooks import DefinedHooksDispatch
from worker_service.brokers.redis import ReliableRedisBroker, ReliableRedisConsumer, make_connection_pool
from worker_service.brokers.settle import Successor


def test_group_commit_serves_every_caller_exactly_once_in_shared_batches():
    batches: list[list[int]] = []
    running = threading.Semaphore(1)
    overlapping = []

    def execute(ops: list[int]) -> list[int]:
        if not running.acquire(blocking=False):
            overlapping.append(ops)
        time.sleep(0.001)  # one round trip
        batches.append(list(ops))
        running.release()
        return [op * 2 for op in ops]

    commit = GroupCommit(execute, max_batch=64)
    results: dict[int, int] = {}

    def caller(base: int) -> None:
        for i in range(200):
            op = base + i
            results[op] = commit.submit(op)

    threads = [threading.Thread(target=caller, args=(t * 1000,)) for t in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    executed = [op for batch in batches for op in batch]
    assert sorted(executed) == sorted(results) and len(executed) == 16 * 200
    assert all(results[op] == op * 2 for op in results)
    assert not overlapping, "two batches ran at the same time"
    assert len(batches) < len(executed) / 4, f"{len(batches)} calls for {len(executed)} operations"
    assert max(len(b) for b in batches) <= 64
    assert commit.pending == []


def test_group_commit_gives_a_batch_error_to_that_batch_only_and_keeps_serving():
    first_running, gate = threading.Event(), threading.Event()

    def execute(ops: list[str]) -> list[str]:
        if ops[0] == "first":
            first_running.set()
            gate.wait(5)  # the others queue up behind this batch
        if "bad" in ops:
            raise redis.ConnectionError("broker gone")
        return ops

    commit: GroupCommit[str, str] = GroupCommit(execute)
    outcomes: dict[str, Any] = {}

    def call(op: str) -> None:
        try:
            outcomes[op] = commit.submit(op)
        except redis.ConnectionError as exc:
            outcomes[op] = exc

    first = threading.Thread(target=call, args=("first",))
    first.start()
    assert first_running.wait(5)
    others = [threading.Thread(target=call, args=(op,)) for op in ("x", "bad", "y")]
    for t in others:
        t.start()
    while len(commit.pending) < 3:
        time.sleep(0.001)
    gate.set()
    for t in [first, *others]:
        t.join(5)
    assert outcomes["first"] == "first"
    errors = [outcomes[op] for op in ("x", "bad", "y")]
    assert all(isinstance(e, redis.ConnectionError) for e in errors)
    assert len({id(e) for e in errors}) == 3, "each caller raises its own copy"
    assert commit.submit("after") == "after"


def test_detached_operations_are_retried_through_transient_errors_and_flushed():
    outage = threading.Event()
    outage.set()
    written: list[str] = []
    attempts: list[list[str]] = []

    def execute(ops: list[str]) -> list[str]:
        attempts.append(list(ops))
        if outage.is_set():
            raise redis.ConnectionError("broker gone")
        written.extend(ops)
        return ops

    commit: GroupCommit[str, str] = GroupCommit(execute, transient=(redis.ConnectionError,))
    for op in ("settle-1", "settle-2"):
        commit.submit_detached(op)  # returns at once, outage or not
    with pytest.raises(redis.ConnectionError):
        commit.submit("mark")  # a waiting caller gets the error and retries itself
    assert commit.flush(0.3) is False and written == []
    outage.clear()
    assert commit.flush(10) is True
    assert written == ["settle-1", "settle-2"]  # each written once, in order, after the outage
    assert len(attempts) >= 3


def test_detached_operations_failing_for_good_are_dropped_not_retried_forever(caplog):
    calls: list[list[str]] = []

    def execute(ops: list[str]) -> list[str]:
        calls.append(list(ops))
        raise ValueError("bad operation")

    commit: GroupCommit[str, str] = GroupCommit(execute, transient=(redis.ConnectionError,))
    commit.submit_detached("bad")
    assert commit.flush(5) is True
    assert calls == [["bad"]]
    assert "failed for good" in caplog.text


def test_group_commit_works_in_a_forked_child():
    """Dramatiq builds the broker, then forks its worker processes: the child needs its own committer."""
    commit: GroupCommit[int, int] = GroupCommit(lambda ops: [op * 2 for op in ops])
    assert commit.submit(1) == 2  # the parent's committer is running when the child is forked
    pid = os.fork()
    if pid == 0:
        os._exit(0 if commit.submit(21) == 42 else 1)
    deadline = time.monotonic() + 10
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    if done[0] == 0:
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's submit never returned")
    assert os.waitstatus_to_exitcode(done[1]) == 0


@pytest.fixture()
def broker(redis_url: str, redis_client: redis.Redis) -> Iterator[ReliableRedisBroker]:
    # The 12 s socket timeout lets an idle consumer block for 5 s (half of it, capped by its timeout).
    client = redis.Redis(connection_pool=make_connection_pool(redis_url, socket_timeout=12, health_check_interval=0,
                                                              connect_attempts=1))
    broker = ReliableRedisBroker(client=client, middleware=[])
    broker.declare_queue("hot")
    yield broker
    broker.close()


def _enqueue(broker: ReliableRedisBroker, n: int) -> list[dramatiq.Message]:
    return [broker.enqueue(dramatiq.Message(queue_name="hot", actor_name="noop", args=(i,), kwargs={},
                                            options={})) for i in range(n)]


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
    assert redis_client.scard(f"dramatiq:__started__.{broker.broker_id}") == 0
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
    original, = _enqueue(broker, 1)
    consumer = broker.consume("hot", prefetch=1, timeout=1000)
    proxy = next(consumer)
    retry = original.copy(options={"retries": 1})
    assert broker.settle("hot", proxy.options["redis_message_id"], Successor(retry, delay_ms=None)) is True
    assert redis_client.llen("dramatiq:hot") == 1 and redis_client.hlen("dramatiq:hot.msgs") == 1
    # Settling again (the message was already handed on): no second successor.
    assert broker.settle("hot", proxy.options["redis_message_id"], Successor(retry, delay_ms=None)) is False
    assert redis_client.llen("dramatiq:hot") == 1
    consumer.close()


def test_waiting_for_a_message_changes_nothing_in_the_queue(broker, redis_client):
    redis_client.rpush("dramatiq:hot", "a", "b", "c")
    broker.wait_for_message("hot", 5)  # returns at once: the queue is not empty
    assert redis_client.lrange("dramatiq:hot", 0, -1) == [b"a", b"b", b"c"]


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
    message, = _enqueue(broker, 1)
    thread.join(5)
    assert received, "the blocked consumer did not wake"
    # A sleeping consumer would have slept out its 5 s block; waking takes a round trip or two.
    assert received[0][0] - sent_at < 2.5
    assert received[0][1].message_id == message.message_id
    consumer.close()


def test_redis_without_blmove_is_polled_instead(tmp_path):
    if not shutil.which("redis-server"):
        pytest.skip("redis-server not installed")
    port = free_port()
    server = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                               "--appendonly", "no", "--rename-command", "BLMOVE", ""],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"redis://127.0.0.1:{port}/0"
        wait_for(lambda: _pings(url), 10, what="redis-server without BLMOVE")
        broker = ReliableRedisBroker(url=url, middleware=[], idle_poll_ms=20)
        broker.declare_queue("hot")
        consumer = broker.consume("hot", prefetch=8, timeout=1000)
        assert next(consumer) is None and broker.can_block is False
        message, = _enqueue(broker, 1)
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
        broker.enqueue(dramatiq.Message(queue_name="hot", actor_name="noop", args=(i,), kwargs={}, options={}),
                       delay=3_600_000)
    consumer = broker.consume("hot.DQ", prefetch=100, timeout=1000)
    held = [next(consumer) for _ in range(3)]
    assert all(h is not None for h in held)
    consumer.ack(held[0])  # its eta passed and it moved on: settled, nothing to give back
    consumer.close()
    assert broker.batches.flush(10)  # the ack is written by the committer
    assert redis_client.scard(f"dramatiq:__acks__.{broker.broker_id}.hot.DQ") == 0
    assert sorted(redis_client.lrange("dramatiq:hot.DQ", 0, -1)) == sorted(
        h.options["redis_message_id"].encode() for h in held[1:])


def test_give_back_during_a_broker_outage_is_retried_by_the_next_consumer(redis_url, redis_client):
    from urllib.parse import urlsplit

    from tests.support.tcpproxy import TcpProxy

    parts = urlsplit(redis_url)
    proxy = TcpProxy(parts.hostname or "127.0.0.1", parts.port or 6379).start()
    client = redis.Redis(connection_pool=make_connection_pool(
        f"redis://127.0.0.1:{proxy.port}{parts.path}", socket_timeout=2, health_check_interval=0, connect_attempts=1))
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


class _Recorder(Middleware):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.calls.append(f"before:{self.name}")

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        self.calls.append(f"after:{self.name}")


class _Broken(Middleware):
    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        raise ValueError("middleware bug")


class _Gate(Middleware):
    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        raise MiddlewareError("stop here")


class _DispatchBroker(DefinedHooksDispatch, StubBroker):
    pass


def test_hook_dispatch_skips_inherited_noops_keeps_order_and_dramatiq_error_handling(caplog):
    calls: list[str] = []
    patched = Middleware()
    patched.before_process_message = lambda broker, message: calls.append("before:patched")  # type: ignore[method-assign]
    plain = Middleware()
    broker = _DispatchBroker(middleware=[_Recorder("a", calls), plain, _Broken(), patched,
                                         _Recorder("b", calls)])
    broker.emit_before("process_message", None)
    broker.emit_after("process_message", None, result=None)
    assert calls == ["before:a", "before:patched", "before:b", "after:b", "after:a"]
    assert "Unexpected failure in before_process_message" in caplog.text
    assert [m for m, _ in broker._hooks_for("before_process_message")][1:2] == [broker.middleware[2]]
    assert plain not in [m for m, _ in broker._hooks_for("before_process_message")]

    calls.clear()
    broker.add_middleware(_Gate())
    with pytest.raises(MiddlewareError):
        broker.emit_before("process_message", None)
    assert calls == ["before:a", "before:patched", "before:b"]
