"""Lifecycle with real worker processes: graceful shutdown, crash recovery, crash loops, chaos."""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from pathlib import Path

import redis

from tests.support.helpers import run_cli, wait_for


def done(client: redis.Redis) -> list[str]:
    return [x.decode() for x in client.lrange("wtest:done", 0, -1)]


def acks_empty(client: redis.Redis) -> bool:
    return not any(client.scard(k) for k in client.scan_iter("dramatiq:__acks__.*"))


def test_sigterm_lets_20_in_flight_messages_finish_exactly_once_and_exits_0(
    worker_env, start_worker, sender, redis_client
):
    worker = start_worker(processes=2, threads=10, grace_ms=30_000)
    for i in range(20):
        sender("sleepy", tag=f"s{i}", seconds=2)
    wait_for(lambda: redis_client.llen("wtest:started") == 20, 30, 0.05, "20 messages in flight")
    worker.terminate()
    assert worker.wait(30) == 0  # within the 30 s grace, or this raises
    assert sorted(done(redis_client)) == sorted(f"s{i}" for i in range(20))
    assert redis_client.llen("dramatiq:tests") == 0 and redis_client.hlen("dramatiq:tests.msgs") == 0
    assert acks_empty(redis_client)


def test_sigterm_returns_prefetched_messages_to_the_queue(worker_env, start_worker, sender, redis_client):
    worker = start_worker(threads=2, grace_ms=30_000)
    redis_client.set("wtest:hold", 1)
    for i in range(10):
        sender("hold", tag=f"h{i}")
    wait_for(lambda: redis_client.llen("wtest:started") == 2, 30, 0.05, "two running")
    worker.terminate()
    # Released once the worker is shutting down (its threads take nothing new from then on); a fixed second
    # was not always enough for SIGTERM to reach it on a loaded machine, and a third message then started.
    wait_for(
        lambda: any(line.get("message") == "Shutting down..." for line in worker.logs()),
        30,
        0.05,
        "the worker shutting down",
    )
    redis_client.delete("wtest:hold")
    assert worker.wait(30) == 0
    assert len(done(redis_client)) == 2
    # the 8 that never started are back in the queue, none stuck in an acks set
    assert redis_client.llen("dramatiq:tests") == 8
    assert acks_empty(redis_client)


def test_kill_9_of_a_worker_holding_100_messages_recovers_all_within_90s(
    worker_env, start_worker, sender, redis_client
):
    env = {**worker_env, "dramatiq_queue_prefetch": "100"}  # default HEARTBEAT_TIMEOUT_MS=60000
    redis_client.set("wtest:hold", 1)
    first = start_worker(env=env, threads=8)
    for i in range(100):
        sender("hold", tag=f"k{i}")
    wait_for(
        lambda: redis_client.llen("wtest:started") == 8 and redis_client.llen("dramatiq:tests") == 0,
        30,
        0.05,
        "100 messages held by the worker",
    )
    first.kill_tree()
    killed_at = time.monotonic()
    redis_client.delete("wtest:hold")
    start_worker(env=env, threads=8)
    wait_for(lambda: len(set(done(redis_client))) == 100, 90, 0.2, "all 100 messages after the kill")
    recovery = time.monotonic() - killed_at
    print(
        f"\nrecovery after kill -9: all 100 messages done {recovery:.1f} s after the kill "
        f"(heartbeat timeout 60 s)"
    )
    assert set(done(redis_client)) == {f"k{i}" for i in range(100)}


def test_crash_loop_of_an_asset_message_ends_its_record_failed_and_every_view_agrees(
    worker_env, start_worker, sender, redis_client, web
):
    """A message that keeps killing its worker runs CRASH_LOOP_LIMIT (3) times, is dead-lettered `crash_loop`,
    and the worker goes on with the others.  Regression: the consumer dead-letters a crash loop before any
    middleware runs, so the asset stayed `processing` forever."""
    import requests

    from tests.support.helpers import WEB_TOKEN

    base, _ = web
    env = {**worker_env, "HEARTBEAT_TIMEOUT_MS": "1500", "MAINTENANCE_INTERVAL_MS": "300"}
    redis_client.set("wtest:hold", 1)
    message_id = sender("tracked_hold", asset_id="crashy")
    sender("noop", tag="bystander")  # behind it on the one thread
    rows: list = []
    for kills in range(8):
        worker = start_worker(env=env, threads=1)

        def started_again_or_dead() -> bool:
            nonlocal rows
            rows = json.loads(run_cli(env, "dlq", "list", "--json").stdout or "[]")
            return bool(rows) or redis_client.llen("wtest:started") > kills  # noqa: B023 - read at once

        wait_for(started_again_or_dead, 30, 0.2, "the message to run again or be dead-lettered")
        if rows:
            break
        worker.kill_tree()  # killed while the message runs
    assert [(r["message_id"], r["error_type"]) for r in rows] == [(message_id, "crash_loop")]
    assert redis_client.llen("wtest:started") == 3  # it ran CRASH_LOOP_LIMIT times, never again
    wait_for(lambda: done(redis_client) == ["bystander"], 30, what="the other message, after it")
    record = json.loads(run_cli(env, "asset", "crashy", "--json").stdout)
    assert (record["status"], record["error_code"]) == ("failed", "crash_loop")
    headers = {"Authorization": f"Bearer {WEB_TOKEN}"}
    assert (
        requests.get(f"{base}/api/assets/crashy", headers=headers, timeout=10).json()["error_code"]
        == "crash_loop"
    )
    listed = requests.get(f"{base}/api/dead-letters", headers=headers, timeout=10).json()["items"]
    assert [(r["message_id"], r["error_type"]) for r in listed] == [(message_id, "crash_loop")]


def test_chaos_sigkill_every_few_seconds_loses_nothing_and_leaves_no_status_unfinished(
    worker_env, start_worker, redis_client
):
    from worker_contracts import Sender

    total = 1000 if os.environ.get("CHAOS_FULL") else 150
    env = {
        **worker_env,
        "HEARTBEAT_TIMEOUT_MS": "2000",
        "MAINTENANCE_INTERVAL_MS": "300",
        "CRASH_LOOP_LIMIT": "50",
    }
    storage = Path(env["STORAGE_ROOT"])
    for i in range(total):
        (storage / f"c{i}.txt").write_text(f"chaos document {i}\n" * random.randint(1, 200))
    sender = Sender(redis_client)
    for i in range(total):
        sender.process_asset(f"c{i}", f"file:c{i}.txt")
    kills = 0
    deadline = time.monotonic() + (300 if os.environ.get("CHAOS_FULL") else 25)
    while time.monotonic() < deadline:
        worker = start_worker(env=env, processes=2, threads=4)
        time.sleep(5)
        worker.kill_tree()
        kills += 1
    start_worker(env=env, processes=2, threads=4)

    def statuses() -> Counter:
        import sqlite3

        path = env["DATABASE_URL"].removeprefix("sqlite:///")
        with sqlite3.connect(path, timeout=30) as conn:
            return Counter(s for (s,) in conn.execute("select status from asset"))

    wait_for(lambda: statuses().get("extracted") == total, 240, 1, f"{total} extracted assets")
    print(f"\nchaos: {kills} SIGKILLs, {total} assets, final statuses {dict(statuses())}")
    assert statuses() == Counter({"extracted": total})
    assert json.loads(run_cli(env, "dlq", "list", "--json").stdout) == []
