"""Worker groups with real workers: a backlog on one queue does not delay another group's work."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from worker_contracts import Sender

from tests.support.fake_openrouter import FakeOpenRouter
from tests.support.helpers import BIN, WorkerProcess, wait_for


def _statuses(env: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    try:
        with sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///"), timeout=30) as conn:
            return {
                a: (s, k) for a, s, k in conn.execute("select asset_id, status, knowledge_status from asset")
            }
    except sqlite3.OperationalError:  # not created yet
        return {}


def test_a_knowledge_backlog_does_not_delay_asset_extraction(worker_env, redis_client, tmp_path):
    fake = FakeOpenRouter()
    fake.mode, fake.slow_seconds = "slow", 30.0  # every LLM call holds its thread for 30 s
    env = {
        **worker_env,
        "OPENROUTER_API_KEY": fake.key,
        "OPENROUTER_BASE_URL": fake.base_url,
        "OPENROUTER_RPS": "50",
        "ASSETS_THREADS": "1",
        "KNOWLEDGE_THREADS": "2",
        "CRM_THREADS": "1",
    }
    storage = Path(env["STORAGE_ROOT"])
    for i in range(8):
        (storage / f"doc{i}.txt").write_text(f"Document {i} about Alice, Bob and the Zenith project.\n")
    worker = WorkerProcess(env, tmp_path / "run.log", command=[str(BIN / "worker"), "run"])
    sender = Sender(redis_client)
    try:
        wait_for(
            lambda: sum(r.get("message", "").startswith("Worker process ready") for r in worker.logs()) >= 3,
            90,
            0.2,
            "the three groups ready",
        )
        for i in range(6):
            sender.process_asset(f"doc{i}", f"file:doc{i}.txt")
        # both knowledge threads wait on the LLM and four knowledge messages queue behind them
        try:
            wait_for(
                lambda: (
                    len(fake.requests) >= 2 and sum(k == "pending" for _, k in _statuses(env).values()) >= 4
                ),
                60,
                0.2,
                "a knowledge backlog",
            )
        except AssertionError:
            raise AssertionError(
                f"no backlog: LLM requests {len(fake.requests)}, records {_statuses(env)}, "
                f"worker log tail {worker.log_path.read_text()[-4000:]}"
            ) from None
        latencies = []
        for i in (6, 7):
            sent = time.monotonic()
            sender.process_asset(f"doc{i}", f"file:doc{i}.txt")
            wait_for(
                lambda i=i: _statuses(env).get(f"doc{i}", ("",))[0] == "extracted",
                20,
                0.05,
                f"doc{i} extracted behind the knowledge backlog",
            )
            latencies.append(time.monotonic() - sent)
        statuses = _statuses(env)
        # the backlog is still there: no knowledge finished, the first two calls are still being answered
        assert not [a for a, (_, k) in statuses.items() if k == "done"]
        assert len(fake.requests) == 2
        print(f"\nextracted behind a knowledge backlog in {', '.join(f'{s:.2f} s' for s in latencies)}")
    finally:
        worker.stop()
        fake.close()
