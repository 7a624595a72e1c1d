"""RabbitMQ nodes of a test's own, from the RabbitMQ that is installed, on loopback ports: one node, or a
cluster (distinct node names and ports, one Erlang cookie).

Each node runs in a session of its own and is killed by process group when the cluster closes; an ``epmd``
that a node had to start is stopped too.  A private node lets a test configure what the shared RabbitMQ must
not change (a short ``consumer_timeout``) and kill nodes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
from pathlib import Path
from typing import Any

import pika

from tests.support.helpers import free_port, unavailable, wait_for

COOKIE = "WORKERSERVICETESTCOOKIE"


def broker_for(env: dict[str, str]) -> Any:
    """A broker built from a worker's environment, so it declares its queues with the worker's own arguments
    (RabbitMQ refuses a queue redeclared with others)."""
    from settings import Settings
    from worker_service.brokers import build_broker

    fields = {key.lower(): value for key, value in env.items() if key.lower() in Settings.model_fields}
    return build_broker(Settings.model_validate(fields), [])


def _binary(name: str) -> str:
    # Debian's /usr/sbin wrappers switch to the rabbitmq user when run as root, who cannot write a test's
    # directories; the real scripts run as the caller.
    real = Path("/usr/lib/rabbitmq/bin") / name
    found = str(real) if real.exists() else shutil.which(name)
    if not found:
        unavailable(f"{name} is not installed (Debian: rabbitmq-server)")
    return str(found)


class RabbitCluster:
    """Parameters: directory (data, logs, configs), nodes (1 or more, clustered), consumer_timeout_ms
    (the server's consumer_timeout, checked every second; None: RabbitMQ's default)."""

    def __init__(self, directory: Path, *, nodes: int = 1, consumer_timeout_ms: int | None = None) -> None:
        self.server, self.ctl = _binary("rabbitmq-server"), _binary("rabbitmqctl")
        self.directory = directory
        self.home = directory / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(COOKIE)
        cookie.chmod(0o400)
        self.epmd_was_running = (
            subprocess.run(["epmd", "-names"], capture_output=True).returncode == 0
            if shutil.which("epmd")
            else True
        )
        self.consumer_timeout_ms = consumer_timeout_ms
        self.ports: list[int] = []
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        try:
            for _ in range(nodes):
                self.ports.append(self._start_node())
            for port in self.ports[1:]:
                for command in (["stop_app"], ["join_cluster", self.node_name(self.ports[0])], ["start_app"]):
                    self.rabbitmqctl(port, *command)
            if nodes > 1:
                wait_for(
                    lambda: self.running_nodes() == len(self.ports), 60, 0.5, "every node in the cluster"
                )
        except BaseException:
            self.close()
            raise

    @staticmethod
    def node_name(port: int) -> str:
        return f"wt{port}@localhost"

    def url(self, port: int | None = None, vhost: str = "/") -> str:
        from urllib.parse import quote

        return f"amqp://guest:guest@127.0.0.1:{port or self.ports[0]}/{quote(vhost, safe='')}"

    def urls(self, vhost: str = "/") -> str:
        """Every node, as BROKER_URL lists them (``;``-separated)."""
        return ";".join(self.url(port, vhost) for port in self.ports)

    def _start_node(self) -> int:
        port = free_port()
        base = self.directory / f"node-{port}"
        (base / "mnesia").mkdir(parents=True)
        (base / "log").mkdir()
        conf = [
            f"listeners.tcp.default = 127.0.0.1:{port}",
            "loopback_users = none",
            "cluster_partition_handling = pause_minority",
        ]
        if self.consumer_timeout_ms is not None:
            conf.append(f"consumer_timeout = {self.consumer_timeout_ms}")
        (base / "rabbitmq.conf").write_text("\n".join(conf) + "\n")
        # consumer time-outs are checked on each channel tick (60 s by default)
        (base / "advanced.config").write_text("[{rabbit, [{channel_tick_interval, 1000}]}].\n")
        (base / "enabled_plugins").write_text("[].\n")
        env = {
            **os.environ,
            **self._env(port),
            "RABBITMQ_DIST_PORT": str(free_port()),
            "RABBITMQ_MNESIA_BASE": str(base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(base / "log"),
            "RABBITMQ_CONFIG_FILE": str(base / "rabbitmq.conf"),
            "RABBITMQ_ADVANCED_CONFIG_FILE": str(base / "advanced.config"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(base / "enabled_plugins"),
            "RABBITMQ_PID_FILE": str(base / "pid"),
        }
        log = open(base / "server.out", "wb")  # noqa: SIM115 - closed with the process
        process = subprocess.Popen(
            [self.server], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=base
        )
        self.processes[port] = process

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(
                    f"rabbitmq-server on {port} exited: {(base / 'server.out').read_text()[-2000:]}"
                )
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                pika.BlockingConnection(pika.URLParameters(self.url(port))).close()
                return True
            except (OSError, pika.exceptions.AMQPError):
                return False

        wait_for(ready, 90, 0.3, f"rabbitmq-server on {port}")
        return port

    def _env(self, port: int) -> dict[str, str]:
        return {
            "HOME": str(self.home),
            "RABBITMQ_NODENAME": self.node_name(port),
            "RABBITMQ_NODE_PORT": str(port),
        }

    def rabbitmqctl(self, port: int, *args: str) -> str:
        done = subprocess.run(
            [self.ctl, "-n", self.node_name(port), *args],
            env={**os.environ, **self._env(port)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, (
            f"rabbitmqctl {' '.join(args)}: {done.stdout[-1000:]}{done.stderr[-1000:]}"
        )
        return done.stdout

    def running_nodes(self) -> int:
        out = self.rabbitmqctl(self.ports[0], "cluster_status", "--formatter", "json")
        return len(json.loads(out).get("running_nodes", []))

    def set_consumer_timeout(self, ms: int) -> None:
        """Every node's consumer_timeout, for the channels opened from now on."""
        for port in self.ports:
            if self.processes[port].poll() is None:
                self.rabbitmqctl(port, "eval", f"application:set_env(rabbit, consumer_timeout, {int(ms)}).")

    def add_vhost(self, vhost: str) -> None:
        self.rabbitmqctl(self.ports[0], "add_vhost", vhost)
        self.rabbitmqctl(self.ports[0], "set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")

    def queue_leader(self, queue: str, vhost: str = "/") -> int:
        """The port of the node that leads quorum queue ``queue``."""
        alive = next(port for port in self.ports if self.processes[port].poll() is None)
        out = self.rabbitmqctl(alive, "list_queues", "-p", vhost, "name", "leader", "--formatter", "json")
        leader = next(row["leader"] for row in json.loads(out) if row["name"] == queue)
        return next(port for port in self.ports if self.node_name(port) == leader)

    def kill(self, port: int) -> None:
        """kill -9 of one node."""
        os.killpg(self.processes[port].pid, signal.SIGKILL)
        self.processes[port].wait(10)

    def close(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                process.wait(10)
        if not self.epmd_was_running and shutil.which("epmd"):
            subprocess.run(["epmd", "-kill"], capture_output=True, timeout=10)
