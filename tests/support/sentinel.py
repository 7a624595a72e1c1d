"""A Redis master, a replica and three sentinels from ``redis-server`` on loopback ports, for failover tests.

Every process is started in a session of its own and stopped by PID when the cluster closes (however the test
ended): nothing outlives the test.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

from tests.support.helpers import free_port, unavailable, wait_for

MASTER_NAME = "mymaster"


class SentinelCluster:
    """Parameters: directory (for configs and logs), down_after_ms (how long before a master is called down),
    min_replicas_to_write (the nodes' ``min-replicas-to-write``, with ``min-replicas-max-lag 10``; 0: off)."""

    def __init__(self, directory: Path, *, down_after_ms: int = 1000, min_replicas_to_write: int = 0) -> None:
        if not shutil.which("redis-server"):
            unavailable("redis-server is not installed (Debian: redis-server)")
        self.directory = directory
        self.min_replicas_to_write = min_replicas_to_write
        directory.mkdir(parents=True, exist_ok=True)
        self.processes: dict[int, subprocess.Popen[bytes]] = {}  # port -> process
        self.redis_ports = [free_port(), free_port()]
        self.sentinel_ports = [free_port(), free_port(), free_port()]
        try:
            self._start_redis(self.redis_ports[0], None)
            self._start_redis(self.redis_ports[1], self.redis_ports[0])
            wait_for(
                lambda: self.node(self.redis_ports[1]).info("replication").get("master_link_status") == "up",
                30,
                0.1,
                "the replica in sync",
            )
            for port in self.sentinel_ports:
                conf = directory / f"sentinel-{port}.conf"
                conf.write_text(
                    f"port {port}\nbind 127.0.0.1\ndir {directory}\n"
                    f"sentinel monitor {MASTER_NAME} 127.0.0.1 {self.redis_ports[0]} 2\n"
                    f"sentinel down-after-milliseconds {MASTER_NAME} {down_after_ms}\n"
                    f"sentinel failover-timeout {MASTER_NAME} 10000\n"
                    f"sentinel parallel-syncs {MASTER_NAME} 1\n"
                )
                self._spawn(port, ["redis-server", str(conf), "--sentinel"])
            wait_for(
                lambda: all(self._sentinel_knows_replica(p) for p in self.sentinel_ports),
                30,
                0.2,
                "every sentinel sees the master and its replica",
            )
        except BaseException:
            self.close()
            raise

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports)
        return f"redis+sentinel://{hosts}/{MASTER_NAME}/0"

    def _spawn(self, port: int, argv: list[str]) -> None:
        log = open(self.directory / f"{port}.log", "wb")  # noqa: SIM115 - closed with the process
        self.processes[port] = subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        wait_for(lambda: self._answers(port), 20, 0.05, f"redis-server on {port}")

    def _start_redis(self, port: int, master: int | None) -> None:
        argv = [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.directory),
            "--dbfilename",
            f"dump-{port}.rdb",
            "--min-replicas-to-write",
            str(self.min_replicas_to_write),
            "--min-replicas-max-lag",
            "10",
        ]
        if master is not None:
            argv += ["--replicaof", "127.0.0.1", str(master)]
        self._spawn(port, argv)

    @staticmethod
    def node(port: int) -> redis.Redis:
        return redis.Redis(port=port, socket_timeout=2, socket_connect_timeout=1)

    def _answers(self, port: int) -> bool:
        try:
            return bool(self.node(port).ping())
        except redis.RedisError:
            return False

    def _sentinel_knows_replica(self, port: int) -> bool:
        try:
            return len(self.node(port).sentinel_slaves(MASTER_NAME)) >= 1
        except redis.RedisError:
            return False

    def master_port(self) -> int:
        address = self.node(self.sentinel_ports[0]).sentinel_get_master_addr_by_name(MASTER_NAME)
        assert isinstance(address, tuple), address
        return int(address[1])

    def replica_port(self) -> int:
        return next(port for port in self.redis_ports if port != self.master_port())

    def kill_replica(self) -> int:
        """SIGKILL the replica; returns its port."""
        port = self.replica_port()
        os.killpg(self.processes[port].pid, signal.SIGKILL)
        self.processes[port].wait(10)
        return port

    def freeze(self, port: int) -> None:
        """SIGSTOP one node (a frozen host); ``thaw`` resumes it."""
        os.killpg(self.processes[port].pid, signal.SIGSTOP)

    def kill_master(self) -> int:
        """SIGKILL the current master; returns its port."""
        port = self.master_port()
        os.killpg(self.processes[port].pid, signal.SIGKILL)
        self.processes[port].wait(10)
        return port

    def planned_failover(self) -> int:
        """SENTINEL FAILOVER (a planned switch, as for maintenance); returns the old master's port."""
        port = self.master_port()
        self.node(self.sentinel_ports[0]).execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        return port

    def freeze_master(self) -> int:
        """SIGSTOP the current master (a frozen host); returns its port.  ``thaw`` resumes it."""
        port = self.master_port()
        self.freeze(port)
        return port

    def thaw(self, port: int) -> None:
        os.killpg(self.processes[port].pid, signal.SIGCONT)

    def wait_for_new_master(self, old: int, timeout: float = 30) -> int:
        started = time.monotonic()
        wait_for(lambda: self.master_port() != old, timeout, 0.1, "the sentinels to promote the replica")
        wait_for(
            lambda: self.node(self.master_port()).info("replication")["role"] == "master",
            max(1.0, timeout - (time.monotonic() - started)),
            0.1,
            "the new master to take writes",
        )
        return self.master_port()

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGCONT)  # a frozen one must be able to die
                except ProcessLookupError:
                    pass
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(10)
