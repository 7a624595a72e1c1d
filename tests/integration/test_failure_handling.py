"""Failure handling with real worker processes on real Redis: budgets, dead letters, hard limits."""

from __future__ import annotations

import json
import time
from pathlib import Path

import redis

from tests.support.helpers import db_query, pg_schema_url, run_cli, wait_for, wait_settled


def dead_letters(env: dict[str, str], *extra: str) -> list[dict]:
    result = run_cli(env, "dlq", "list", "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_poison_message_is_dead_lettered_after_exactly_its_budget_with_the_final_error(
    worker_env, start_worker, sender, redis_client: redis.Redis
):
    worker = start_worker()
    message_id = sender("poison", tag="p1")
    rows = wait_for(lambda: dead_letters(worker_env), 30, 0.3, "a dead letter")
    assert len(rows) == 1
    row = rows[0]
    assert row["message_id"] == message_id
    assert row["error_type"] == "retries_exhausted"
    assert row["attempts"] == 3
    assert row["error_message"] == "boom on attempt 3"  # the final attempt, not the first
    assert redis_client.get("wtest:attempts:p1") == b"3"
    detail = json.loads(run_cli(worker_env, "dlq", "show", str(row["id"]), "--json").stdout)
    assert "boom on attempt 3" in detail["traceback"]
    assert [h["error"] for h in detail["history"]] == [
        "TransientError: boom on attempt 1",
        "TransientError: boom on attempt 2",
    ]
    # nothing left in Dramatiq's own XQ to disagree with the database
    assert redis_client.zcard("dramatiq:tests.XQ") == 0
    assert worker.process.poll() is None


def test_permanent_error_is_not_retried(worker_env, start_worker, sender, redis_client):
    start_worker()
    sender("permanent", tag="x")
    rows = wait_for(lambda: dead_letters(worker_env), 30, 0.3, "a dead letter")
    assert rows[0]["error_type"] == "permanent_error"
    assert rows[0]["attempts"] == 1
    assert redis_client.llen("wtest:attempt") == 1


def test_invalid_payload_unknown_actor_and_garbage_become_dead_letters_and_the_worker_goes_on(
    worker_env, start_worker, sender, redis_client
):
    start_worker()
    sender("process_asset", queue="assets", asset_id="a1")  # missing source
    sender("no_such_actor", tag="?")
    redis_client.hset("dramatiq:tests.msgs", "garbage-id", b"\x00not json{")
    redis_client.rpush("dramatiq:tests", "garbage-id")
    sender("noop", tag="after")
    rows = wait_for(
        lambda: len(dead_letters(worker_env)) >= 3 and dead_letters(worker_env), 30, 0.3, "three dead letters"
    )
    by_type = {r["error_type"]: r for r in rows}
    assert set(by_type) == {"invalid_payload", "unknown_actor", "undecodable"}
    assert "source" in by_type["invalid_payload"]["error_message"]
    assert by_type["unknown_actor"]["actor"] == "no_such_actor"
    wait_for(lambda: redis_client.lrange("wtest:done", 0, -1) == [b"after"], 20, what="the next message")
    # nothing stuck in an acks set
    wait_for(
        lambda: not any(redis_client.smembers(k) for k in redis_client.scan_iter("dramatiq:__acks__.*")),
        10,
        what="empty acks sets",
    )
    status = db_query(worker_env, "select status, error_code from asset where asset_id='a1'")
    assert status == [("failed", "invalid_payload")]


def test_native_blocking_call_is_killed_at_the_hard_limit_and_the_next_message_runs(
    worker_env, start_worker, sender, redis_client
):
    start_worker(threads=1)
    sender("native_block", tag="slow", seconds=60, limit=1.5)
    sender("noop", tag="next")
    wait_for(lambda: b"next" in redis_client.lrange("wtest:done", 0, -1), 30, what="the next message")
    rows = wait_for(lambda: dead_letters(worker_env), 30, 0.3, "a dead letter")
    assert rows[0]["error_type"] == "timeout"
    assert rows[0]["attempts"] == 2  # one retry after a hard timeout, then final
    assert redis_client.lrange("wtest:done", 0, -1) == [b"next"]


def test_memory_hog_is_stopped_by_its_cap(worker_env, start_worker, sender, redis_client):
    start_worker(threads=1)
    sender("memory_hog", tag="hog", megabytes=2000, cap=300)
    rows = wait_for(lambda: dead_letters(worker_env), 30, 0.3, "a dead letter")
    assert rows[0]["error_type"] == "memory"
    assert rows[0]["attempts"] == 1
    sender("noop", tag="after-hog")
    wait_for(lambda: b"after-hog" in redis_client.lrange("wtest:done", 0, -1), 20, what="the next message")


def test_retry_whose_reenqueue_is_cut_by_a_broker_fault_loses_nothing(
    worker_env, start_worker, sender, redis_client, redis_url
):
    from urllib.parse import urlsplit

    from tests.support.tcpproxy import TcpProxy

    parts = urlsplit(redis_url)
    proxy = TcpProxy(parts.hostname, parts.port or 6379).start()
    env = {
        **worker_env,
        "BROKER_URL": f"redis://127.0.0.1:{proxy.port}{parts.path}",
        "TEST_RECORD_URL": redis_url,
        "BROKER_CONNECT_ATTEMPTS": "1",
    }
    start_worker(env=env, threads=2)
    sender("cut_then_fail", tag="cut1")
    wait_for(lambda: redis_client.lrange("wtest:cut", 0, -1) == [b"cut1"], 30, what="the first attempt")
    proxy.cut()  # the actor now fails, and the retry is enqueued while the broker is unreachable
    redis_client.set("wtest:cut-done", 1)
    time.sleep(4)
    assert redis_client.lrange("wtest:done", 0, -1) == []
    proxy.start()  # same port: the worker's settle retry gets through
    wait_for(lambda: redis_client.lrange("wtest:done", 0, -1) == [b"cut1"], 60, 0.2, "the retried message")
    assert redis_client.get("wtest:attempts:cut1") == b"2"
    assert dead_letters(worker_env) == []
    proxy.cut()


def test_delayed_messages_held_through_a_broker_cut_still_run(
    worker_env, start_worker, sender, redis_client, redis_url
):
    """Dramatiq's consumer thread forgets its in-memory delay queue when the broker connection fails;
    the messages must not stay held by the live worker (they did: nothing ran until a restart)."""
    from urllib.parse import urlsplit

    from tests.support.tcpproxy import TcpProxy

    parts = urlsplit(redis_url)
    proxy = TcpProxy(parts.hostname, parts.port or 6379).start()
    env = {
        **worker_env,
        "BROKER_URL": f"redis://127.0.0.1:{proxy.port}{parts.path}",
        "TEST_RECORD_URL": redis_url,
        "BROKER_CONNECT_ATTEMPTS": "1",
    }
    start_worker(env=env, threads=2)
    eta = int(time.time() * 1000) + 8_000
    for i in range(5):
        sender("noop", queue="tests.DQ", options={"eta": eta}, tag=f"delayed{i}")

    def held_in_memory() -> bool:
        held = sum(redis_client.scard(k) for k in redis_client.scan_iter("dramatiq:__acks__.*.tests.DQ"))
        return held == 5 and redis_client.llen("dramatiq:tests.DQ") == 0

    wait_for(held_in_memory, 30, 0.05, "the delayed messages held by the worker")
    proxy.cut()
    time.sleep(3)  # the delay-queue consumer polls every 50 ms: it fails and restarts
    proxy.start()
    wait_for(lambda: len(redis_client.lrange("wtest:done", 0, -1)) == 5, 60, 0.2, "all five delayed messages")
    assert sorted(redis_client.lrange("wtest:done", 0, -1)) == sorted(
        f"delayed{i}".encode() for i in range(5)
    )
    assert dead_letters(worker_env) == []
    proxy.cut()


def test_requeued_dead_letter_is_processed_and_a_concurrent_double_requeue_runs_once(
    worker_env, start_worker, sender, redis_client
):
    import threading

    start_worker()
    message_id = sender("flaky", tag="fl", failures=5)  # budget 5 attempts: dies as retries_exhausted
    row = wait_for(lambda: dead_letters(worker_env), 30, 0.3, "a dead letter")[0]
    assert row["message_id"] == message_id and row["error_type"] == "retries_exhausted"
    redis_client.set("wtest:attempts:fl", 100)  # the upstream is fixed: later attempts succeed
    results: list = []
    threads = [
        threading.Thread(target=lambda: results.append(run_cli(worker_env, "dlq", "requeue", str(row["id"]))))
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    outputs = sorted(r.stdout.strip() for r in results)
    assert outputs == ["requeued 0", f"requeued 1: {row['id']}"], outputs
    wait_for(lambda: redis_client.lrange("wtest:done", 0, -1) == [b"fl"], 30, what="the requeued message")
    wait_settled(redis_client, "tests")  # a second copy, had there been one, has run by now
    assert redis_client.lrange("wtest:done", 0, -1) == [b"fl"]  # once
    assert dead_letters(worker_env) == []
    requeued = dead_letters(worker_env, "--state", "requeued")
    assert [r["message_id"] for r in requeued] == [message_id]
    audit = json.loads(run_cli(worker_env, "dlq", "audit", "--json").stdout)
    assert [a["action"] for a in audit] == ["requeue", "requeue"]
    assert sorted(a["count"] for a in audit) == [0, 1]
    assert all(a["who"].startswith("cli:") for a in audit)


def test_bulk_delete_by_filter_and_purge_are_audited(worker_env, start_worker, sender):
    start_worker()
    for i in range(3):
        sender("permanent", tag=f"d{i}")
    sender("poison", tag="keep")
    wait_for(lambda: len(dead_letters(worker_env)) == 4, 40, 0.3, "four dead letters")
    result = run_cli(worker_env, "dlq", "delete", "--all", "--actor", "permanent")
    assert result.stdout.strip() == "deleted 3"
    assert [r["actor"] for r in dead_letters(worker_env)] == ["poison"]
    assert len(dead_letters(worker_env, "--state", "deleted")) == 3
    audit = json.loads(run_cli(worker_env, "dlq", "audit", "--json").stdout)
    assert [(a["action"], a["count"]) for a in audit] == [("delete", 3)]
    assert audit[0]["detail"]["filter"]["actor"] == "permanent"
    assert (
        run_cli(worker_env, "dlq", "purge", "--older-than", "0").returncode == 0
    )  # retention: everything older
    assert dead_letters(worker_env, "--state", "deleted") == [] and dead_letters(worker_env) == []
    audit = json.loads(run_cli(worker_env, "dlq", "audit", "--json").stdout)
    assert [(a["action"], a["detail"]) for a in audit] == [("purge", {"dead_letters": 4, "audit_entries": 1})]


def _pg_statuses(url: str) -> dict[str, str]:
    """Asset statuses read straight from PostgreSQL: not through the proxy, and without migrating anything."""
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT to_regclass('asset') IS NOT NULL")
            if not cur.fetchone()[0]:
                return {}
            cur.execute("SELECT asset_id, status FROM asset")
            return dict(cur.fetchall())
    finally:
        conn.close()


def _pg_dead_letters(url: str) -> int:
    import psycopg2

    conn = psycopg2.connect(url)
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM dead_letter")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def _ready(worker) -> bool:
    return any(r.get("message", "").startswith("Worker process ready") for r in worker.logs())


def test_database_unreachable_for_30s_loses_nothing(
    worker_env, start_worker, redis_client, redis_url, pg_url
):
    """Regression (flaky in the full suite): the cut came ~0.3 s after the worker was spawned, before it had
    migrated its fresh schema, so the worker never migrated it; whether the messages then burnt their attempts
    on "relation does not exist" depended on whether this test's own `worker asset` polls (which migrate)
    won the race.  Now the worker is up before the cut and the statuses are read without migrating."""
    from worker_contracts import Sender

    from tests.support.tcpproxy import TcpProxy

    proxy = TcpProxy("127.0.0.1", 5432).start()
    schema_url = pg_schema_url(pg_url, "wtest_outage")
    database_url = schema_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}") + "&connect_timeout=2"
    env = {**worker_env, "DATABASE_URL": database_url}
    storage = Path(env["STORAGE_ROOT"])
    for i in range(10):
        (storage / f"doc{i}.txt").write_text(f"document number {i}\n" * 50)
    worker = start_worker(env=env, threads=4)
    wait_for(lambda: _ready(worker), 60, 0.2, "worker ready")
    sender = Sender(redis_client)
    for i in range(5):
        sender.process_asset(f"db{i}", f"file:doc{i}.txt")
    wait_for(lambda: _pg_statuses(schema_url), 30, 0.02, "the first asset under way")
    proxy.cut()
    for i in range(5, 10):
        sender.process_asset(f"db{i}", f"file:doc{i}.txt")
    time.sleep(30)
    proxy.start()
    wait_for(
        lambda: _pg_statuses(schema_url) == {f"db{i}": "extracted" for i in range(10)},
        90,
        0.5,
        "all assets extracted",
    )
    assert _pg_dead_letters(schema_url) == 0
    proxy.cut()


def test_worker_started_during_a_database_outage_migrates_once_it_is_back(
    worker_env, start_worker, redis_client, pg_url
):
    """Regression: a worker that could not migrate at start never did, and ran on a schema without tables:
    every message burnt its attempts on "relation does not exist" and was dead-lettered."""
    from worker_contracts import Sender

    from tests.support.tcpproxy import TcpProxy

    proxy = TcpProxy("127.0.0.1", 5432).start()
    schema_url = pg_schema_url(pg_url, "wtest_boot_outage")
    env = {
        **worker_env,
        "DATABASE_URL": schema_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        + "&connect_timeout=2",
    }
    proxy.cut()
    storage = Path(env["STORAGE_ROOT"])
    for i in range(5):
        (storage / f"b{i}.txt").write_text(f"booted during an outage {i}\n" * 20)
    worker = start_worker(env=env, threads=2)
    wait_for(lambda: _ready(worker), 60, 0.2, "worker ready")
    assert any("Database unavailable at start" in r.get("message", "") for r in worker.logs())
    sender = Sender(redis_client)
    for i in range(5):
        sender.process_asset(f"b{i}", f"file:b{i}.txt")
    time.sleep(6)  # every message meets the outage at least once
    proxy.start()
    # nothing else migrates the schema here: no CLI call, no other worker
    wait_for(
        lambda: _pg_statuses(schema_url) == {f"b{i}": "extracted" for i in range(5)},
        60,
        0.5,
        "all assets extracted",
    )
    assert _pg_dead_letters(schema_url) == 0
    assert any("migrations applied" in r.get("message", "") for r in worker.logs())
    proxy.cut()


def test_database_down_at_dead_lettering_stores_one_row_later_and_never_reruns_the_actor(
    worker_env, start_worker, sender, redis_client, pg_url
):
    """Regression: a dead letter kept for later (`dead_letter_pending`) came back and simply ran its actor again."""
    from tests.support.tcpproxy import TcpProxy

    proxy = TcpProxy("127.0.0.1", 5432).start()
    schema_url = pg_schema_url(pg_url, "wtest_pending")
    env = {
        **worker_env,
        "DATABASE_URL": schema_url.replace("127.0.0.1:5432", f"127.0.0.1:{proxy.port}")
        + "&connect_timeout=2",
    }
    try:
        start_worker(env=env, threads=2)
        sender("fail_after_cut", tag="pd")
        wait_for(lambda: redis_client.llen("wtest:cut") == 1, 30, 0.05, "the actor running")
        proxy.cut()
        redis_client.set("wtest:cut-done", 1)
        # The dead letter cannot be stored: it is kept (pending, back every 10 s) and tried again while the
        # database stays down; the actor must not run again meanwhile.
        wait_for(lambda: redis_client.hlen("dramatiq:tests.DQ.msgs") == 1, 30, 0.1, "the pending dead letter")
        time.sleep(14)  # at least one more return while the database is down
        assert int(redis_client.get("wtest:runs:pd")) == 1
        proxy.start()
        wait_for(lambda: len(dead_letters(env)) == 1, 60, 0.5, "the dead letter stored")
        wait_settled(redis_client, "tests")  # its pending copy settled: no second dead letter can come
        rows = dead_letters(env)
        assert [(r["actor"], r["error_type"], r["error_message"]) for r in rows] == [
            ("fail_after_cut", "permanent_error", "this can never work")
        ]
        assert int(redis_client.get("wtest:runs:pd")) == 1  # as many runs as before the outage
        assert (
            redis_client.hlen("dramatiq:tests.msgs") == 0 and redis_client.hlen("dramatiq:tests.DQ.msgs") == 0
        )
    finally:
        proxy.cut()


def test_dead_letter_path_on_rabbitmq(worker_env, start_worker, redis_client, redis_url, rabbit_url):
    import uuid

    from dramatiq.message import Message

    from worker_service.brokers.rabbitmq import ReliableRabbitmqBroker

    broker = ReliableRabbitmqBroker(url=rabbit_url)
    broker.declare_queue("tests")
    broker.flush("tests")
    env = {
        **worker_env,
        "BROKER_URL": rabbit_url,
        "TEST_RECORD_URL": redis_url,
        "RATELIMIT_REDIS_URL": redis_url,
    }
    start_worker(env=env)
    message = Message(
        queue_name="tests",
        actor_name="poison",
        args=(),
        kwargs={"tag": "rmq"},
        options={},
        message_id=str(uuid.uuid4()),
        message_timestamp=int(time.time() * 1000),
    )
    broker.enqueue(message)
    garbage = "not a message"
    broker.channel.basic_publish(exchange="", routing_key="tests", body=garbage.encode())
    rows = wait_for(lambda: len(dead_letters(env)) == 2 and dead_letters(env), 60, 0.5, "two dead letters")
    by_type = {r["error_type"]: r for r in rows}
    assert by_type["retries_exhausted"]["message_id"] == message.message_id
    assert by_type["retries_exhausted"]["error_message"] == "boom on attempt 3"
    assert by_type["retries_exhausted"]["attempts"] == 3
    assert "undecodable" in by_type
    _, _, dead = broker.get_queue_message_counts("tests")
    assert dead == 0  # RabbitMQ's own .XQ holds no stale copy
    broker.close()
