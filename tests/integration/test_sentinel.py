"""Redis under Sentinel, for real: a master, a replica and three sentinels on loopback ports.  A failover is an
outage like any other: nothing lost, nothing dead-lettered, no "failed for good"."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.helpers import run_cli, wait_for
from tests.support.sentinel import SentinelCluster


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    made = SentinelCluster(tmp_path / "sentinel")
    yield made
    made.close()


@pytest.fixture()
def sentinel_env(worker_env: dict[str, str], cluster: SentinelCluster, redis_url: str) -> dict[str, str]:
    # the test actors record what they did in the test Redis, which no failover touches
    return {**worker_env, "BROKER_URL": cluster.url, "TEST_RECORD_URL": redis_url, "REDIS_SENTINEL_TIMEOUT_SECONDS": "0.3"}


@pytest.mark.processes
def test_the_url_form_reaches_the_master_and_check_reports_the_sentinels(cluster, sentinel_env):
    from worker_contracts import Sender

    check = run_cli(sentinel_env, "check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert (f"sentinel: master mymaster at 127.0.0.1:{cluster.master_port()}; 3/3 sentinels answered; 1 replica(s)"
            in check.stdout)
    Sender(url=cluster.url).extract_knowledge("s-1")
    assert cluster.node(cluster.master_port()).llen("dramatiq:knowledge") == 1


@pytest.mark.parametrize("how", ["kill -9", "SENTINEL FAILOVER", "SIGSTOP past the heartbeat time-out"])
def test_a_failover_mid_run_loses_nothing_and_fails_nothing(cluster, sentinel_env, start_worker, redis_client, how):
    """200 messages queued and running; the master killed, switched over, or frozen for longer than the
    heartbeat time-out (5 s here) and then resumed: every message runs, none is dead-lettered or counted as a
    crash, and nothing logs "failed for good"."""

    import time
    import uuid

    env = {**sentinel_env, "HEARTBEAT_TIMEOUT_MS": "5000"}
    worker = start_worker(env=env, threads=8)
    tags = [f"m{i}" for i in range(200)]
    # sleepy is a test actor (not a contract): enqueued the way a foreign sender would, on the master
    master = cluster.node(cluster.master_port())

    pipe = master.pipeline()
    for tag in tags:
        redis_id = str(uuid.uuid4())
        body = {"queue_name": "tests", "actor_name": "sleepy", "args": [], "kwargs": {"tag": tag, "seconds": 0.1},
                "options": {"redis_message_id": redis_id}, "message_id": str(uuid.uuid4()),
                "message_timestamp": int(time.time() * 1000)}
        pipe.hset("dramatiq:tests.msgs", redis_id, json.dumps(body, separators=(",", ":")))
        pipe.rpush("dramatiq:tests", redis_id)
    pipe.execute()
    master.wait(1, 5000)  # on the replica before the master dies (asynchronous replication otherwise)
    wait_for(lambda: redis_client.llen("wtest:done") >= 40, 60, 0.1, "work under way")
    killed_at = time.monotonic()
    if how == "kill -9":
        old = cluster.kill_master()
    elif how == "SENTINEL FAILOVER":
        old = cluster.planned_failover()
    else:
        old = cluster.freeze_master()
    new = cluster.wait_for_new_master(old)
    if how.startswith("SIGSTOP"):
        time.sleep(max(0.0, 6.0 - (time.monotonic() - killed_at)))  # frozen past the 5 s heartbeat time-out
        cluster.thaw(old)
    wait_for(lambda: set(redis_client.lrange("wtest:done", 0, -1)) >= {t.encode() for t in tags}, 60, 0.2,
             "every message done after the failover")
    print(f"\n{how}: {old} -> {new}; all 200 done {time.monotonic() - killed_at:.1f} s after it")
    assert json.loads(run_cli(env, "dlq", "list", "--json").stdout) == []
    lines = worker.logs()
    assert not [line for line in lines if "for good" in line.get("message", "")]
    assert not [line for line in lines if "crash_loop" in json.dumps(line)]


def test_redis_wait_replicas_makes_writes_wait_for_a_replica_and_says_when_none_has_them(
        cluster, sentinel_env, start_worker, redis_client):
    """REDIS_WAIT_REPLICAS=1: settles, retry copies and enqueues (process_asset sends extract_knowledge) wait for
    the replica; with the replica gone they still go through, after the time-out, with a warning."""
    from worker_contracts import Sender

    env = {**sentinel_env, "REDIS_WAIT_REPLICAS": "1", "REDIS_WAIT_TIMEOUT_MS": "300"}
    storage = Path(env["STORAGE_ROOT"])
    for name in ("one", "two"):
        (storage / f"{name}.txt").write_text(f"document {name}")
    worker = start_worker(env=env, threads=2)
    sender = Sender(url=cluster.url)

    def status(asset_id: str) -> dict:
        out = run_cli(env, "asset", asset_id, "--json")
        return json.loads(out.stdout) if out.returncode == 0 else {}

    sender.process_asset("one", "file:one.txt")
    wait_for(lambda: status("one").get("knowledge_status") == "skipped", 60, 0.3, "asset one through both steps")
    assert not [line for line in worker.logs() if "REDIS_WAIT_REPLICAS" in line.get("message", "")]
    cluster.kill_replica()
    sender.process_asset("two", "file:two.txt")
    wait_for(lambda: status("two").get("knowledge_status") == "skipped", 60, 0.3, "asset two without a replica")
    warned = [line["message"] for line in worker.logs() if "REDIS_WAIT_REPLICAS" in line.get("message", "")]
    assert warned and all("of 1 replica(s) within 300 ms" in message for message in warned)


def test_the_python_sender_waits_for_a_replica_when_asked_and_says_when_none_confirms(cluster, caplog):
    """wait_replicas=1: a send returns only once the replica has the messages (the replica is frozen for 0.6 s
    and has them the moment the send returns); with the replica gone the send still enqueues, after the
    time-out, with a warning and ``last_replicas`` 0."""
    import threading
    import time

    from worker_contracts import Sender

    sender = Sender(url=cluster.url, wait_replicas=1, wait_timeout_ms=5000)
    master, replica_port = cluster.node(cluster.master_port()), cluster.replica_port()
    replica = cluster.node(replica_port)
    sender.extract_knowledge("w-0")
    assert sender.last_replicas == 1
    cluster.freeze(replica_port)
    threading.Timer(0.6, cluster.thaw, args=(replica_port,)).start()
    started = time.monotonic()
    sender.send_many("extract_knowledge", [{"asset_id": f"w-{i}"} for i in range(1, 101)])
    waited = time.monotonic() - started
    assert replica.llen("dramatiq:knowledge") == 101
    assert sender.last_replicas == 1 and waited >= 0.4, waited

    cluster.kill_replica()
    sender = Sender(url=cluster.url, wait_replicas=1, wait_timeout_ms=300)
    with caplog.at_level("WARNING", logger="worker_contracts.sender"):
        sender.extract_knowledge("w-alone")
    assert sender.last_replicas == 0
    assert master.llen("dramatiq:knowledge") == 102
    assert "1 message(s) for knowledge reached 0 of 1 replica(s) within 300 ms" in caplog.text


def test_a_settle_lost_in_the_switch_is_redelivered_not_held_forever(cluster, sentinel_env, start_worker,
                                                                     redis_client):
    """The new master says this live worker holds a message it does not (its settle, or the fetch's undo, did
    not replicate before the switch): after the failover the worker notices the new master and gives it back,
    and it runs.  Injected: the message's id put in the worker's acks set, as a lost settle leaves it."""
    import time
    import uuid

    start_worker(env=sentinel_env, threads=2)
    master = cluster.node(cluster.master_port())
    wait_for(lambda: master.zcard("dramatiq:__heartbeats__") >= 1 and master.sismember("dramatiq:__queues__", "tests"),
             60, 0.2, "the worker heartbeating")
    broker_id = master.zrange("dramatiq:__heartbeats__", 0, -1)[0].decode()
    redis_id = str(uuid.uuid4())
    body = {"queue_name": "tests", "actor_name": "noop", "args": [], "kwargs": {"tag": "lost-settle"},
            "options": {"redis_message_id": redis_id}, "message_id": str(uuid.uuid4()),
            "message_timestamp": int(time.time() * 1000)}
    master.hset("dramatiq:tests.msgs", redis_id, json.dumps(body, separators=(",", ":")))
    master.sadd(f"dramatiq:__acks__.{broker_id}.tests", redis_id)  # "held" by a live worker that does not hold it
    master.wait(1, 5000)
    time.sleep(2)  # a few maintenance rounds on the old master: nothing happens while it stays the master
    assert redis_client.lrange("wtest:done", 0, -1) == []
    old = cluster.planned_failover()
    cluster.wait_for_new_master(old)
    wait_for(lambda: redis_client.lrange("wtest:done", 0, -1) == [b"lost-settle"], 30, 0.2,
             "the message given back after the switch, and run")
