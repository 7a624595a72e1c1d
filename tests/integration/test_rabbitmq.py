"""RabbitMQ as a first-class broker, on RabbitMQ nodes of the tests' own (tests/support/rabbitmq.py: a short
consumer_timeout, nodes to kill): quorum queues, the crash-loop limit, pause and resume, delayed messages past
the consumer time-out, graceful restarts that spend no delivery, and a three-node cluster losing a node."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pika
import pytest
import redis
import requests
from dramatiq.message import Message

from tests.support.helpers import WEB_TOKEN, run_cli, wait_for
from tests.support.rabbitmq import RabbitCluster, broker_for

CONSUMER_TIMEOUT_MS = 5000


@pytest.fixture(scope="module")
def rabbit_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RabbitCluster]:
    node = RabbitCluster(tmp_path_factory.mktemp("rabbit"), consumer_timeout_ms=CONSUMER_TIMEOUT_MS)
    yield node
    node.close()


@pytest.fixture()
def rabbit_env(worker_env: dict[str, str], rabbit_node: RabbitCluster, redis_url: str) -> dict[str, str]:
    """The worker on a fresh vhost of the private node (quorum queues by default)."""
    vhost = f"t-{uuid.uuid4().hex[:8]}"
    rabbit_node.add_vhost(vhost)
    return {
        **worker_env,
        "BROKER_URL": rabbit_node.url(vhost=vhost),
        "RATELIMIT_REDIS_URL": redis_url,
        "TEST_RECORD_URL": redis_url,
        "RABBITMQ_CONSUMER_TIMEOUT_MS": str(CONSUMER_TIMEOUT_MS),
        "MAINTENANCE_INTERVAL_MS": "300",
    }


def send(broker: Any, actor: str, *, delay: int | None = None, **kwargs: Any) -> str:
    message = Message(
        queue_name="tests",
        actor_name=actor,
        args=(),
        kwargs=kwargs,
        options={},
        message_id=str(uuid.uuid4()),
        message_timestamp=int(time.time() * 1000),
    )
    broker.enqueue(message, delay=delay)
    return message.message_id


def records(client: redis.Redis, kind: str) -> list[str]:
    return [x.decode() for x in client.lrange(f"wtest:{kind}", 0, -1)]


def dead_letters(env: dict[str, str]) -> list[dict]:
    listed = run_cli(env, "dlq", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return json.loads(listed.stdout)


def queue_rows(node: RabbitCluster, env: dict[str, str]) -> dict[str, dict]:
    from urllib.parse import unquote, urlsplit

    vhost = unquote(urlsplit(env["BROKER_URL"]).path[1:])
    out = node.rabbitmqctl(
        node.ports[0],
        "list_queues",
        "-p",
        vhost,
        "name",
        "type",
        "arguments",
        "messages",
        "consumers",
        "--formatter",
        "json",
    )
    rows = {row["name"]: row for row in json.loads(out)}
    for row in rows.values():
        row["arguments"] = {name: value for name, _type, value in row["arguments"]}
    return rows


def test_queues_are_quorum_with_the_delivery_limit_and_a_classic_vhost_is_refused_clearly(
    rabbit_node, rabbit_env
):
    check = run_cli(rabbit_env, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "rabbitmq: 1 node(s) in BROKER_URL; quorum queues, delivery limit 3" in check.stdout
    rows = queue_rows(rabbit_node, rabbit_env)
    assert rows["assets"]["type"] == "quorum"
    arguments = rows["assets"]["arguments"]
    assert arguments["x-delivery-limit"] == 3 and arguments["x-dead-letter-routing-key"] == "assets.XQ"
    assert (
        arguments["x-dead-letter-strategy"] == "at-least-once" and arguments["x-overflow"] == "reject-publish"
    )
    assert "x-delivery-limit" not in rows["assets.DQ"]["arguments"]  # a delayed message is not a crash
    assert {rows[name]["type"] for name in ("assets.DQ", "assets.XQ", "assets.PQ")} == {"quorum"}
    assert rows["assets.PQ"]["arguments"]["x-message-ttl"] == CONSUMER_TIMEOUT_MS // 2

    # An existing vhost of classic queues (an earlier version's): RabbitMQ refuses quorum, the check says why.
    vhost = f"c-{uuid.uuid4().hex[:8]}"
    rabbit_node.add_vhost(vhost)
    classic = {**rabbit_env, "BROKER_URL": rabbit_node.url(vhost=vhost)}
    connection = pika.BlockingConnection(pika.URLParameters(classic["BROKER_URL"]))
    connection.channel().queue_declare(
        "assets",
        durable=True,
        arguments={"x-dead-letter-exchange": "", "x-dead-letter-routing-key": "assets.XQ"},
    )
    connection.close()
    refused = run_cli(classic, "check")
    assert refused.returncode == 1
    assert "RabbitMQ refused to declare queue 'assets' as RABBITMQ_QUEUE_TYPE=quorum" in refused.stdout
    assert "set RABBITMQ_QUEUE_TYPE=classic" in refused.stdout
    assert run_cli({**classic, "RABBITMQ_QUEUE_TYPE": "classic"}, "check").returncode == 0


def test_a_message_that_kills_its_worker_ends_crash_loop_after_at_most_the_limit_plus_one_deaths(
    rabbit_env, start_worker, redis_client
):
    """tracked_hold runs until killed, every time: RabbitMQ's delivery limit (CRASH_LOOP_LIMIT 3) stops it after
    4 deliveries, the drainer stores exactly one crash_loop dead letter and the record ends failed."""
    broker = broker_for(rabbit_env)
    redis_client.set("wtest:hold", 1)
    message_id = send(broker, "tracked_hold", asset_id="crashy")
    rows: list[dict] = []
    for kills in range(8):
        worker = start_worker(env=rabbit_env, threads=1)

        def started_again_or_dead() -> bool:
            nonlocal rows
            rows = dead_letters(rabbit_env)
            return bool(rows) or len(records(redis_client, "started")) > kills  # noqa: B023 - read at once

        wait_for(started_again_or_dead, 60, 0.3, "the message to run again or be dead-lettered")
        if rows:
            break
        worker.kill_tree()  # killed while the message runs
    assert [(r["message_id"], r["error_type"]) for r in rows] == [(message_id, "crash_loop")]
    assert len(records(redis_client, "started")) == 4  # CRASH_LOOP_LIMIT + 1 deliveries, never again
    record = json.loads(run_cli(rabbit_env, "asset", "crashy", "--json").stdout)
    assert (record["status"], record["error_code"]) == ("failed", "crash_loop")
    send(broker, "noop", tag="after")
    wait_for(lambda: records(redis_client, "done") == ["after"], 30, 0.2, "the worker going on")
    assert queue_rows_messages(broker, "tests.XQ") == 0
    broker.close()


def queue_rows_messages(broker: Any, queue: str) -> int:
    return int(broker.channel.queue_declare(queue, passive=True).method.message_count)


def test_a_graceful_restart_spends_no_delivery_of_what_it_had_prefetched(
    rabbit_env, start_worker, redis_client
):
    """SIGTERM with messages prefetched and not started: they go back as fresh copies (x-delivery-count 0), so
    restarts never push a healthy message toward the crash-loop limit."""
    broker = broker_for(rabbit_env)
    redis_client.set("wtest:hold", 1)
    for i in range(12):
        send(broker, "hold", tag=f"h{i}")
    worker = start_worker(env=rabbit_env, threads=2)  # prefetch: Dramatiq takes more than its 2 threads run
    wait_for(lambda: len(records(redis_client, "started")) == 2, 30, 0.1, "two running")
    wait_for(lambda: queue_rows_messages(broker, "tests") < 10, 30, 0.1, "more prefetched than running")
    worker.terminate()
    time.sleep(1.0)
    redis_client.delete("wtest:hold")  # the two running finish within the grace
    assert worker.wait(60) == 0
    connection = pika.BlockingConnection(pika.URLParameters(rabbit_env["BROKER_URL"]))
    channel = connection.channel()
    counts = []
    while True:
        method, properties, body = channel.basic_get("tests")
        if method is None:
            break
        counts.append(int((properties.headers or {}).get("x-delivery-count", 0)))
    connection.close()
    assert len(counts) == 10 and set(counts) == {0}, counts
    broker.close()


def test_pause_unsubscribes_within_two_seconds_and_resume_processes_everything(
    rabbit_node, rabbit_env, start_worker, start_web, redis_client
):
    broker = broker_for(rabbit_env)
    start_worker(env=rabbit_env, threads=2)
    send(broker, "noop", tag="before")
    wait_for(lambda: records(redis_client, "done") == ["before"], 30, 0.2, "the worker up")
    base, _ = start_web(
        **{k: v for k, v in rabbit_env.items() if k.startswith(("BROKER_", "RATELIMIT_", "RABBITMQ_"))}
    )
    headers = {"Authorization": f"Bearer {WEB_TOKEN}"}
    started = time.monotonic()
    queue_rows(rabbit_node, rabbit_env)
    one_look = time.monotonic() - started  # what one look costs on this host now (rabbitmqctl), not the pause
    paused_at = time.monotonic()
    paused = requests.post(f"{base}/api/queues/tests/pause", headers=headers, timeout=10)
    assert paused.status_code == 200 and paused.json()["paused"] is True, paused.text
    # regression (issue 44): it slept 2 s, then looked once, and failed on a loaded host; now it looks until the
    # consumers are gone, and the 2 s is the bound tested (plus what the looks themselves took). Gone means two
    # looks in a row: a consumer that re-subscribes (RabbitMQ's consumer_timeout) shows 0 for a moment too.
    zeros: list[bool] = []

    def gone() -> bool:
        zeros.append(queue_rows(rabbit_node, rabbit_env)["tests"]["consumers"] == 0)
        return zeros[-2:] == [True, True]

    wait_for(gone, 2.0 + 2 * one_look, 0.05, "no consumer of a paused queue within 2 s")
    time.sleep(
        max(0.0, paused_at + 2.0 - time.monotonic())
    )  # what follows relies on the 2 s promise having passed
    for i in range(20):
        send(broker, "noop", tag=f"p{i}")
    time.sleep(3.0)
    assert records(redis_client, "done") == ["before"]  # nothing started while paused
    assert queue_rows_messages(broker, "tests") == 20
    resumed = requests.post(f"{base}/api/queues/tests/resume", headers=headers, timeout=10)
    assert resumed.status_code == 200 and resumed.json()["paused"] is False
    wait_for(lambda: len(records(redis_client, "done")) == 21, 30, 0.2, "all processed after resume")
    assert sorted(records(redis_client, "done")[1:]) == sorted(f"p{i}" for i in range(20))
    assert dead_letters(rabbit_env) == []
    broker.close()


def test_a_message_delayed_past_the_consumer_timeout_runs_once_and_is_not_dead_lettered(
    rabbit_env, start_worker, redis_client
):
    """Held unacknowledged for its whole 12 s delay, RabbitMQ (consumer_timeout 5 s) would close the channel and
    redeliver it: it is parked instead, and comes back to run once when due."""
    broker = broker_for(rabbit_env)
    worker = start_worker(env=rabbit_env, threads=2)
    sent_at = time.monotonic()
    send(broker, "noop", delay=12_000, tag="later")
    wait_for(lambda: records(redis_client, "done") == ["later"], 60, 0.2, "the delayed message")
    assert time.monotonic() - sent_at >= 11.5
    time.sleep(3.0)
    assert records(redis_client, "done") == ["later"]
    assert dead_letters(rabbit_env) == []
    assert not [line for line in worker.logs() if "timed out" in json.dumps(line)]
    broker.close()


@pytest.mark.processes
def test_a_three_node_cluster_loses_the_leader_of_the_queue_and_loses_nothing(
    tmp_path: Path, worker_env, start_worker, redis_url, redis_client
):
    """500 confirmed messages on a quorum queue; kill -9 of the node that leads it while they are processed:
    every one runs, duplicates stay within what the dead node had delivered unacknowledged, and processing
    resumes within 15 s."""
    cluster = RabbitCluster(tmp_path / "cluster", nodes=3, consumer_timeout_ms=CONSUMER_TIMEOUT_MS)
    try:
        env = {
            **worker_env,
            "BROKER_URL": cluster.urls(),
            "RATELIMIT_REDIS_URL": redis_url,
            "TEST_RECORD_URL": redis_url,
            "RABBITMQ_CONSUMER_TIMEOUT_MS": str(CONSUMER_TIMEOUT_MS),
        }
        broker = broker_for(env)
        tags = [f"m{i}" for i in range(500)]
        for tag in tags:
            send(broker, "sleepy", tag=tag, seconds=0.02)
        broker.close()
        leader = cluster.queue_leader("tests")
        threads = 4
        start_worker(env=env, threads=threads)
        wait_for(lambda: len(records(redis_client, "done")) >= 50, 60, 0.1, "work under way")
        cluster.kill(leader)
        killed_at = time.monotonic()
        done_at_kill = len(records(redis_client, "done"))
        wait_for(
            lambda: len(records(redis_client, "done")) > done_at_kill + threads * 2,
            60,
            0.05,
            "processing after the kill",
        )
        resumed = time.monotonic() - killed_at
        wait_for(lambda: set(records(redis_client, "done")) >= set(tags), 120, 0.3, "every message")
        done = records(redis_client, "done")
        duplicates = len(done) - len(set(done))
        print(
            f"\ncluster: leader {leader} killed; processing resumed {resumed:.1f} s later; "
            f"{duplicates} duplicate(s); all 500 done"
        )
        assert resumed < 15
        assert duplicates <= threads * 2  # at most what the worker held unacknowledged (its prefetch)
    finally:
        cluster.close()


def test_the_reconciler_repairs_what_a_purge_lost_and_leaves_slow_and_delayed_work_alone(
    rabbit_node, rabbit_env, start_worker
):
    """Two assets mid-run when their worker dies, then their queue purged behind the fleet's back, and a record
    whose message never arrived: each is rebuilt from its record once its lease has expired in two rounds.  A
    slow message in flight (its lease renewed by its worker) and a delayed retry (leased to its next attempt)
    are never touched, though RabbitMQ cannot list its queues."""
    import sqlite3

    from worker_contracts import build_message, validate_payload

    from tests.support.gatedorigin import GatedOrigin
    from worker_service.database import Asset, init_database, session, utcnow

    def statuses() -> dict[str, tuple[str, str | None]]:
        with sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///"), timeout=30) as conn:
            return {a: (s, c) for a, s, c in conn.execute("select asset_id, status, error_code from asset")}

    def send_asset(name: str) -> None:
        kwargs = validate_payload("process_asset", {"asset_id": name, "source": f"{origin.url}/{name}"})
        broker.enqueue(Message(**{**build_message("process_asset", kwargs), "args": ()}))

    origin = GatedOrigin()
    env = {
        **rabbit_env,
        "FETCH_ALLOW_HTTP": "true",
        "FETCH_ALLOWLIST": "127.0.0.1",
        "FETCH_READ_TIMEOUT_SECONDS": "120",
        "RECONCILE_INTERVAL_SECONDS": "1",
        "RECONCILE_GRACE_SECONDS": "3",
        "RETRY_BACKOFF_BASE_MS": "300000",
        "RETRY_BACKOFF_MAX_MS": "600000",
    }
    assert run_cli(env, "migrate").returncode == 0
    broker = broker_for(env)
    # the slow message runs past this node's 5 s consumer_timeout, which would redeliver it (docs/operations.rst)
    rabbit_node.set_consumer_timeout(120_000)
    try:
        origin.hold("p0", "p1")
        first = start_worker(env=env, threads=4)
        for name in ("p0", "p1"):
            send_asset(name)
        wait_for(
            lambda: [s for s, _ in statuses().values()].count("processing") == 2, 30, 0.2, "2 processing"
        )
        first.kill_tree()  # RabbitMQ puts both back in the queue...
        wait_for(lambda: queue_rows_messages(broker, "assets") == 2, 30, 0.2, "both back in the queue")
        vhost = env["BROKER_URL"].rsplit("/", 1)[1]
        rabbit_node.rabbitmqctl(
            rabbit_node.ports[0], "purge_queue", "-p", vhost, "assets"
        )  # ... and loses them
        init_database(env["DATABASE_URL"])
        with session():
            Path(env["STORAGE_ROOT"], "r0.txt").write_text("received document r0\n" * 10)
            Asset.create(asset_id="r0", status="received", source="file:r0.txt", updated_at=utcnow())
        origin.release("p0", "p1")
        origin.hold("slow")
        origin.fail("retry")
        start_worker(env=env, threads=4)
        send_asset("slow")
        send_asset("retry")
        lost = ("p0", "p1", "r0")
        wait_for(
            lambda: all(statuses().get(a, ("",))[0] == "extracted" for a in lost),
            60,
            0.5,
            "every lost record extracted",
        )
        time.sleep(6)  # several more rounds, each past the 3 s grace of the slow and the delayed record
        now = statuses()
        assert now["slow"] == ("processing", None) and now["retry"][0] == "retrying"
        assert (origin.hits["slow"], origin.hits["retry"]) == (1, 1)  # never rebuilt, never run twice
        audit = json.loads(run_cli(env, "dlq", "audit", "--json").stdout)
        assert sorted(a["target"] for a in audit if a["action"] == "reconcile-requeued") == sorted(lost)
        origin.release("slow")
        wait_for(lambda: statuses()["slow"][0] == "extracted", 30, 0.3, "the slow one extracted")
    finally:
        rabbit_node.set_consumer_timeout(CONSUMER_TIMEOUT_MS)
        origin.close()
        broker.close()


def test_a_poison_asset_ends_crash_loop_even_when_the_reconciler_runs_while_every_consumer_is_down(
    rabbit_env, start_worker, redis_client
):
    """Regression (issue 44): a process_asset whose fetch kills its worker, with the reconciler every second and a
    3 s grace. Its consumers stay down longer than the grace after each death (a crash-looping pod in back-off),
    while another worker group (consuming `tests` only) runs the reconciler. RabbitMQ dead-letters the message into
    assets.XQ at its fourth delivery; the reconciler used to see an expired lease and an empty queue and send the
    asset again with a fresh delivery count (8 deliveries and still `processing`). Now it drains assets.XQ
    first: at most CRASH_LOOP_LIMIT + 1 deliveries, one crash_loop dead letter, the record failed/crash_loop."""
    from tests.support.gatedorigin import GatedOrigin
    from tests.support.helpers import BIN

    origin = GatedOrigin()
    env = {
        **rabbit_env,
        "RECONCILE_INTERVAL_SECONDS": "1",
        "RECONCILE_GRACE_SECONDS": "3",
        "FETCH_ALLOW_HTTP": "true",
        "FETCH_ALLOWLIST": "127.0.0.1",
        "CRASH_LOOP_LIMIT": "3",
    }
    try:
        origin.hold("poison")
        start_worker(
            env=env,
            command=[
                str(BIN / "dramatiq"),
                "actors",
                "tests.support.worker_actors",
                "--queues",
                "tests",
                "--processes",
                "1",
                "--threads",
                "1",
            ],
        )  # the reconciler's home
        broker = broker_for(env)
        message = Message(
            queue_name="assets",
            actor_name="process_asset",
            args=(),
            kwargs={"asset_id": "poison", "source": f"{origin.url}/poison"},
            options={},
            message_id=str(uuid.uuid4()),
            message_timestamp=int(time.time() * 1000),
        )
        broker.enqueue(message)

        def record() -> dict:
            shown = run_cli(env, "asset", "poison", "--json")
            return json.loads(shown.stdout) if shown.returncode == 0 else {}

        for kills in range(8):
            consumer = start_worker(
                env=env,
                command=[
                    str(BIN / "dramatiq"),
                    "actors",
                    "tests.support.worker_actors",
                    "--queues",
                    "assets",
                    "--processes",
                    "1",
                    "--threads",
                    "1",
                ],
            )
            wait_for(
                lambda: origin.hits["poison"] > kills or record().get("status") == "failed",  # noqa: B023
                60,
                0.2,
                "the poison fetched again or failed",
            )
            if record().get("status") == "failed":
                consumer.stop()
                break
            consumer.kill_tree()  # its fetch kills it
            time.sleep(
                4.5
            )  # every consumer of `assets` down for longer than the 3 s grace (the condition itself)
        final = record()
        assert (final["status"], final["error_code"]) == ("failed", "crash_loop"), final
        assert origin.hits["poison"] <= 4  # CRASH_LOOP_LIMIT + 1 deliveries, whatever the reconciler's timing
        dead = [r for r in dead_letters(env) if r["error_type"] == "crash_loop"]
        assert len(dead) == 1
        broker.close()
    finally:
        origin.release("poison")
        origin.close()
