"""Two hosts on one Redis: a worker in its own network namespace is cut off mid-work; the other finishes all."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import redis

from tests.support.helpers import BIN, ROOT, free_port, unavailable, wait_for

NS = f"wktest{os.getpid() % 10000}"


HOST_IP, NS_IP = "10.231.9.1", "10.231.9.2"  # the test's own veth pair, inside this machine


VETH = f"wkv{os.getpid() % 10000}"


def _ip(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True)


@pytest.fixture()
def netns() -> Iterator[str]:
    if not shutil.which("ip") or os.geteuid() != 0:
        unavailable("network namespaces need iproute2 and root")
    if _ip("netns", "add", NS).returncode != 0:
        unavailable("this machine does not allow network namespaces (ip netns add failed)")
    try:
        steps = [
            ("link", "add", VETH, "type", "veth", "peer", "name", f"{VETH}p"),
            ("link", "set", f"{VETH}p", "netns", NS),
            ("addr", "add", f"{HOST_IP}/24", "dev", VETH),
            ("link", "set", VETH, "up"),
            ("netns", "exec", NS, "ip", "addr", "add", f"{NS_IP}/24", "dev", f"{VETH}p"),
            ("netns", "exec", NS, "ip", "link", "set", f"{VETH}p", "up"),
            ("netns", "exec", NS, "ip", "link", "set", "lo", "up"),
        ]
        for step in steps:
            result = _ip(*step)
            if result.returncode != 0:
                unavailable(f"cannot build the veth pair: {result.stderr.strip()}")
        yield NS
    finally:
        _ip("link", "del", VETH)
        _ip("netns", "del", NS)


def test_host_cut_off_mid_work_loses_nothing(netns, worker_env, tmp_path):
    if not shutil.which("redis-server"):
        unavailable("redis-server not installed")
    port = free_port()
    # bound to loopback and the test's own veth address only; the other "host" has no password
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            HOST_IP,
            "--save",
            "",
            "--protected-mode",
            "no",
            "--appendonly",
            "no",
            "--dir",
            str(tmp_path),
        ],
        stdout=subprocess.DEVNULL,
    )
    workers: list[subprocess.Popen] = []
    try:
        local = f"redis://127.0.0.1:{port}/0"
        client = redis.Redis.from_url(local)
        wait_for(lambda: _ping(client), 10, what="redis")
        common = {
            **worker_env,
            "HEARTBEAT_TIMEOUT_MS": "3000",
            "MAINTENANCE_INTERVAL_MS": "300",
            "BROKER_SOCKET_TIMEOUT_SECONDS": "2",
            "CRASH_LOOP_LIMIT": "10",
        }
        args = ["tests.support.worker_actors", "--processes", "1", "--threads", "4"]
        host_a = {
            **common,
            "BROKER_URL": f"redis://{HOST_IP}:{port}/0",
            "TEST_RECORD_URL": f"redis://{HOST_IP}:{port}/0",
        }
        host_b = {**common, "BROKER_URL": local, "TEST_RECORD_URL": local}
        log_a, log_b = open(tmp_path / "a.log", "wb"), open(tmp_path / "b.log", "wb")  # noqa: SIM115
        workers.append(
            subprocess.Popen(
                ["ip", "netns", "exec", netns, str(BIN / "dramatiq"), *args],
                cwd=ROOT,
                env=host_a,
                stdout=log_a,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        workers.append(
            subprocess.Popen(
                [str(BIN / "dramatiq"), *args],
                cwd=ROOT,
                env=host_b,
                stdout=log_b,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        import uuid

        from worker_contracts.sender import encode

        tags = [f"h{i}" for i in range(60)]
        pipe = client.pipeline()
        for tag in tags:
            rid = str(uuid.uuid4())
            pipe.hset(
                "dramatiq:tests.msgs",
                rid,
                encode(
                    {
                        "queue_name": "tests",
                        "actor_name": "sleepy",
                        "args": [],
                        "kwargs": {"tag": tag, "seconds": 0.5},
                        "options": {"redis_message_id": rid},
                        "message_id": str(uuid.uuid4()),
                        "message_timestamp": int(time.time() * 1000),
                    }
                ),
            )
            pipe.rpush("dramatiq:tests", rid)
        pipe.execute()
        # both hosts are working ...
        wait_for(
            lambda: client.zcard("dramatiq:__heartbeats__") >= 2 and client.llen("wtest:done") >= 8,
            60,
            0.2,
            "both hosts working",
        )
        _ip("link", "set", VETH, "down")  # ... and host A is cut off from Redis mid-work
        cut_at = time.monotonic()
        wait_for(
            lambda: set(t.decode() for t in client.lrange("wtest:done", 0, -1)) >= set(tags),
            120,
            0.5,
            "every message done by the surviving host",
        )
        print(
            f"\ntwo hosts: host A cut off; host B finished everything {time.monotonic() - cut_at:.1f} s later"
        )
        assert client.hlen("dramatiq:tests.msgs") == 0 or wait_for(
            lambda: client.hlen("dramatiq:tests.msgs") == 0, 30, 0.5, "no message left behind"
        )
    finally:
        for worker in workers:
            try:
                os.killpg(worker.pid, 9)
            except ProcessLookupError:
                pass
        server.terminate()
        server.wait(10)


def _ping(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False
