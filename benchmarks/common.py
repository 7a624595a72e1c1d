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


def worker_env(tmp: str, **extra: str) -> dict[str, str]:
    """Environment of a benchmark worker: db 12, SQLite and storage in ``tmp``, no metrics port."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("dramatiq_", "WORKER_"))}
    env.update({"BROKER_URL": REDIS_URL, "DATABASE_URL": f"sqlite:///{tmp}/bench.db", "STORAGE_ROOT": tmp,
                "LOG_LEVEL": "WARNING", "PYTHONPATH": str(ROOT), "TEST_PREFIX": "bench", "METRICS_PORT": "0",
                "METRICS_DIR": f"{tmp}/metrics"})
    env.update(extra)
    return env


def enqueue_raw(client: redis.Redis, actor: str, queue: str, payloads: list[dict[str, Any]]) -> None:
    """Enqueue Dramatiq messages in Dramatiq's Redis layout, pipelined (the send path is not measured here)."""
    from contracts.sender import encode

    for start in range(0, len(payloads), 2000):
        pipe = client.pipeline(transaction=False)
        for kwargs in payloads[start:start + 2000]:
            rid = str(uuid.uuid4())
            pipe.hset(f"dramatiq:{queue}.msgs", rid, encode({
                "queue_name": queue, "actor_name": actor, "args": [], "kwargs": kwargs,
                "options": {"redis_message_id": rid}, "message_id": str(uuid.uuid4()),
                "message_timestamp": int(time.time() * 1000)}))
            pipe.rpush(f"dramatiq:{queue}", rid)
        pipe.execute()
