"""What the benchmarks and the profiler share: paths, the Redis db they own (12), worker env, raw enqueue."""

from __future__ import annotations

import os
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/") + "/12"
RESULTS = ROOT / "benchmarks" / "results"
PG_URL = os.environ.get("TEST_PG_URL", "postgresql://postgres@127.0.0.1:5432/test")


def postgres_skipped(benchmark: str) -> list[dict[str, Any]] | None:
    """The row a PostgreSQL benchmark returns when PostgreSQL is unreachable; None when it is there."""
    import psycopg2

    try:
        psycopg2.connect(PG_URL).close()
    except psycopg2.OperationalError as exc:
        return [
            {
                "benchmark": benchmark,
                "variant": "skipped",
                "value": 0,
                "unit": "",
                "notes": f"PostgreSQL unreachable: {exc}".splitlines()[0],
            }
        ]
    return None


def psycopg2_connection(schema_url: str) -> Any:
    """An autocommit connection to the schema a ``pg_schema_url`` URL names."""
    import psycopg2

    conn = psycopg2.connect(
        schema_url.split("?")[0], options=f"-csearch_path={schema_url.rsplit('%3D', 1)[1]}"
    )
    conn.autocommit = True
    return conn


def worker_env(tmp: str, **extra: str) -> dict[str, str]:
    """Environment of a benchmark worker: db 12, SQLite and storage in ``tmp``, no metrics port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("dramatiq_", "WORKER_"))}
    env.update(
        {
            "BROKER_URL": REDIS_URL,
            "DATABASE_URL": f"sqlite:///{tmp}/bench.db",
            "STORAGE_ROOT": tmp,
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            "TEST_PREFIX": "bench",
            "METRICS_PORT": "0",
            "METRICS_DIR": f"{tmp}/metrics",
        }
    )
    env.update(extra)
    return env


def enqueue_raw(client: redis.Redis, actor: str, queue: str, payloads: list[dict[str, Any]]) -> None:
    """Enqueue Dramatiq messages in Dramatiq's Redis layout, pipelined (the send path is not measured here)."""
    from worker_contracts.sender import encode

    for start in range(0, len(payloads), 2000):
        pipe = client.pipeline(transaction=False)
        for kwargs in payloads[start : start + 2000]:
            rid = str(uuid.uuid4())
            pipe.hset(
                f"dramatiq:{queue}.msgs",
                rid,
                encode(
                    {
                        "queue_name": queue,
                        "actor_name": actor,
                        "args": [],
                        "kwargs": kwargs,
                        "options": {"redis_message_id": rid},
                        "message_id": str(uuid.uuid4()),
                        "message_timestamp": int(time.time() * 1000),
                    }
                ),
            )
            pipe.rpush(f"dramatiq:{queue}", rid)
        pipe.execute()


class WorkerRun:
    """`worker run` (every group, default sizes unless ``env`` says otherwise) for a benchmark, with the RSS of
    each worker process sampled every 0.5 s; ``stop()`` ends it gracefully, then kills whatever is left."""

    def __init__(self, env: dict[str, str]) -> None:
        import subprocess
        import threading

        self.process = subprocess.Popen(
            [str(BIN / "worker"), "run"],
            cwd=ROOT,
            env=env,
            start_new_session=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.peak_rss_mb: dict[str, float] = {}  # group -> largest worker process RSS seen
        self._stopped = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        self._sampler.start()

    def _sample(self) -> None:
        while not self._stopped.wait(0.5):
            for group, rss in worker_rss_mb(self.process.pid).items():
                self.peak_rss_mb[group] = max(self.peak_rss_mb.get(group, 0.0), rss)

    def stop(self) -> None:
        import signal

        self._stopped.set()
        tree = _descendants(self.process.pid)
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(90)
        finally:
            for pid in [self.process.pid, *tree]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def _stat(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _descendants(root: int) -> set[int]:
    parents = {
        int(p.name): int(f[1])
        for p in Path("/proc").iterdir()
        if p.name.isdigit() and (f := _stat(int(p.name)))
    }
    found, todo = set(), [root]
    while todo:
        parent = todo.pop()
        for pid, ppid in parents.items():
            if ppid == parent and pid not in found:
                found.add(pid)
                todo.append(pid)
    return found


def worker_rss_mb(supervisor: int) -> dict[str, float]:
    """Largest RSS (MB) among each group's worker processes (children of the group's Dramatiq main, which is a
    child of ``supervisor``); extraction children and fork servers are one level further down, not counted."""
    out: dict[str, float] = {}
    for pid in _descendants(supervisor):
        try:
            main = int(_stat(pid)[1])
            if main == supervisor or int(_stat(main)[1]) != supervisor:
                continue
            argv = Path(f"/proc/{main}/cmdline").read_bytes().split(b"\0")
            group = argv[argv.index(b"--group") + 1].decode()
            rss_kb = next(
                int(line.split()[1])
                for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                if line.startswith("VmRSS:")
            )
        except (OSError, IndexError, ValueError, StopIteration):
            continue  # gone meanwhile
        out[group] = max(out.get(group, 0.0), rss_kb / 1024)
    return out
