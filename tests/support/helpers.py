"""Helpers the tests share: waiting, free ports, real worker processes, the CLI, databases.

Fixtures live in tests/conftest.py; everything a test imports lives here.
"""

from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

import pytest

ROOT = Path(__file__).resolve().parent.parent.parent
BIN = Path(sys.executable).parent
WEB_PASSWORD = "correct horse battery staple"
WEB_TOKEN = "api-token-123"


def unavailable(reason: str) -> NoReturn:
    """Skip a test whose service, tool, privilege or data file is missing, with ``reason``; under
    REQUIRE_ALL_TESTS=1 (.ci/run sets it) fail instead, so CI cannot turn green without what it proves."""
    if os.environ.get("REQUIRE_ALL_TESTS") == "1":
        pytest.fail(f"{reason} (REQUIRE_ALL_TESTS=1: this test must run here)", pytrace=False)
    pytest.skip(reason)


def wait_for(
    predicate: Callable[[], Any], timeout: float, interval: float = 0.1, what: str = "condition"
) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def wait_settled(client: Any, *queues: str, timeout: float = 60, namespace: str = "dramatiq") -> None:
    """Until every message of ``queues`` (waiting, delayed or running) is settled: their payload hashes, which
    hold a message until its ack, are empty.  What a test waits for before asserting that something happened
    only once (instead of sleeping and hoping a duplicate would have shown up by then)."""
    wait_for(
        lambda: all(
            client.hlen(f"{namespace}:{queue}.msgs") == 0 and client.hlen(f"{namespace}:{queue}.DQ.msgs") == 0
            for queue in queues
        ),
        timeout,
        0.1,
        f"every message of {', '.join(queues)} settled",
    )


def wait_paused_everywhere(
    client: Any, queue: str, *, bound_s: float = 2.0, timeout: float = 30, namespace: str = "dramatiq"
) -> float:
    """Until every live worker process reports ``queue`` paused (its report, each maintenance round, says what its
    consumers and its pause check see), then to at least ``bound_s`` after the call (the documented time a pause
    takes to reach everyone): a test sends its messages after this, however loaded the host.  Returns the
    seconds the reports took."""
    started = time.monotonic()

    def everywhere() -> bool:
        reports = [json.loads(raw) for raw in client.hvals(f"{namespace}:__workers__")]
        live = [
            r
            for r in reports
            if time.time() - float(r.get("heartbeat_at", 0)) < 10 and queue in r.get("queues", [])
        ]
        return bool(live) and all(queue in r.get("paused", []) for r in live)

    wait_for(everywhere, timeout, 0.1, f"every worker to report {queue} paused")
    took = time.monotonic() - started
    time.sleep(max(0.0, bound_s - took))
    return took


_GIVEN: set[int] = set()


def free_port() -> int:
    """A free port for a server a test starts, below the kernel's ephemeral range (32768+: every outgoing
    connection takes one, so a port picked there can be taken before the server binds it; seen in CI as a
    metrics probe answered by another test's process) and in a band of its own per pytest-xdist worker."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    band = int(worker[2:]) + 1 if worker.startswith("gw") and worker[2:].isdigit() else 0
    low = 20_000 + 1_500 * (band % 8)
    if len(_GIVEN) > 1_000:  # long runs: ports handed out long ago are free again
        _GIVEN.clear()
    for _ in range(200):
        port = random.randrange(low, low + 1_500)
        if port in _GIVEN:  # handed to an earlier caller that may not have bound it yet
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _GIVEN.add(port)
        return port
    raise RuntimeError(f"no free port in {low}-{low + 1_499}")


def descendants(root: int) -> set[int]:
    """Every process below ``root``, whatever session or process group it moved to."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def _parent(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, ValueError):
        return None


def _started_at(pids: set[int]) -> dict[int, str]:
    out = {}
    for pid in pids:
        try:
            out[pid] = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
        except (OSError, IndexError):
            continue
    return out


def kill_tree(root: int) -> None:
    """SIGKILL ``root`` and every process below it (``worker run`` puts each group in a process group of its
    own, so a process-group kill does not reach them all)."""
    for pid in [root, *descendants(root)]:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class WorkerProcess:
    """A real `dramatiq actors ...` process tree."""

    def __init__(
        self,
        env: dict[str, str],
        log_path: Path,
        *,
        processes: int = 1,
        threads: int = 4,
        modules: tuple[str, ...] = ("tests.support.worker_actors",),
        grace_ms: int = 30_000,
        command: list[str] | None = None,
    ) -> None:
        self.log_path = log_path
        argv = command or [
            str(BIN / "dramatiq"),
            "actors",
            *modules,
            "--processes",
            str(processes),
            "--threads",
            str(threads),
            "--worker-shutdown-timeout",
            str(grace_ms),
        ]
        self.argv = argv
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True
        )

    def terminate(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)

    def kill_tree(self) -> None:
        kill_tree(self.process.pid)
        self.process.wait(10)

    def _mains(self) -> set[int]:
        """The Dramatiq main processes: this one, or the groups' under a ``worker run`` supervisor."""
        if self.argv[1:2] == ["run"] and "--group" not in self.argv:
            return {pid for pid in descendants(self.process.pid) if _parent(pid) == self.process.pid}
        return {self.process.pid}

    def dump_stacks(self) -> None:
        """SIGUSR1 to the worker processes: each prints all its thread stacks into the log (a Dramatiq main
        process has no handler: the signal would kill it)."""
        if self.process.poll() is not None:
            return
        mains = self._mains()
        for pid in descendants(self.process.pid):
            if _parent(pid) in mains:
                try:
                    os.kill(pid, signal.SIGUSR1)
                except ProcessLookupError:
                    continue
        time.sleep(0.5)

    def wait(self, timeout: float) -> int:
        return self.process.wait(timeout)

    def stop(self) -> None:
        tree = _started_at(descendants(self.process.pid))
        if self.process.poll() is None:
            self.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill_tree()
        for pid, started in tree.items():  # no stray process, even one its parent lost track of
            if _started_at({pid}).get(pid) == started:  # still the same process, not a reused pid
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.log.close()

    def logs(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text(errors="replace").splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return out


def pg_schema_url(pg_url: str, schema: str) -> str:
    """A fresh, empty PostgreSQL schema; the URL that uses it."""
    import psycopg2

    conn = psycopg2.connect(pg_url)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        cur.execute(f"CREATE SCHEMA {schema}")
    conn.close()
    return f"{pg_url}?options=-csearch_path%3D{schema}"


def run_cli(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "worker"), *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout
    )


def db_query(env: dict[str, str], sql: str) -> list[tuple]:
    import sqlite3

    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=30) as conn:
        return conn.execute(sql).fetchall()


def answers_ok(url: str, timeout: float = 2.0) -> bool:
    """``url`` answers 200 now (a refused or timed-out connection is a no, not an error)."""
    import requests

    try:
        return requests.get(url, timeout=timeout).status_code == 200
    except requests.RequestException:
        return False


def post_login(
    base: str,
    user: str,
    password: str,
    *,
    session: Any = None,
    headers: dict[str, str] | None = None,
    next_path: str | None = None,
) -> Any:
    """A dashboard login as a browser makes it: the form first (its CSRF token and cookie), then the post; the
    answer (303 on success) is returned unfollowed."""
    import requests

    http = session if session is not None else requests.Session()
    form = http.get(f"{base}/login", headers=headers, timeout=30)
    token = form.text.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    data = {"user": user, "password": password, "csrf": token, **({"next": next_path} if next_path else {})}
    # the form's cookie sent explicitly: behind a trusted proxy's X-Forwarded-Proto it is Secure, which requests
    # would not send to http://127.0.0.1 (a browser speaks https to that proxy)
    return http.post(
        f"{base}/login",
        data=data,
        headers=headers,
        cookies={k: v or "" for k, v in form.cookies.get_dict().items()},
        allow_redirects=False,
        timeout=60,
    )
