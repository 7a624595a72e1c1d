"""Failure handling with real worker processes on real Redis: budgets, dead letters, hard limits."""

from __future__ import annotations

import json

import redis

from tests.conftest import db_query, run_cli, wait_for


def dead_letters(env: dict[str, str], *extra: str) -> list[dict]:
    result = run_cli(env, "dlq", "list", "--json", *extra)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_poison_message_is_dead_lettered_after_exactly_its_budget_with_the_final_error(
        worker_env, start_worker, sender, redis_client: redis.Redis):
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
    assert [h["error"] for h in detail["history"]] == ["TransientError: boom on attempt 1",
                                                       "TransientError: boom on attempt 2"]
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
        worker_env, start_worker, sender, redis_client):
    start_worker()
    sender("process_asset", queue="assets", asset_id="a1")  # missing source
    sender("no_such_actor", tag="?")
    redis_client.hset("dramatiq:tests.msgs", "garbage-id", b"\x00not json{")
    redis_client.rpush("dramatiq:tests", "garbage-id")
    sender("noop", tag="after")
    rows = wait_for(lambda: len(dead_letters(worker_env)) >= 3 and dead_letters(worker_env), 30, 0.3,
                    "three dead letters")
    by_type = {r["error_type"]: r for r in rows}
    assert set(by_type) == {"invalid_payload", "unknown_actor", "undecodable"}
    assert "source" in by_type["invalid_payload"]["error_message"]
    assert by_type["unknown_actor"]["actor"] == "no_such_actor"
    wait_for(lambda: redis_client.lrange("wtest:done", 0, -1) == [b"after"], 20, what="the next message")
    # nothing stuck in an acks set
    wait_for(lambda: not any(redis_client.smembers(k) for k in redis_client.scan_iter("dramatiq:__acks__.*")), 10,
             what="empty acks sets")
    status = db_query(worker_env, "select status, error_code from asset where asset_id='a1'")
    assert status == [("failed", "invalid_payload")]


def test_native_blocking_call_is_killed_at_the_hard_limit_and_the_next_message_runs(
        worker_env, start_worker, sender, redis_client):
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
