"""The reconciler under real workers: a broker flushed behind their backs, every affected record repaired."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path


def _statuses(env: dict[str, str]) -> dict[str, tuple[str, str | None]]:
    path = env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=30) as conn:
        return {a: (s, c) for a, s, c in conn.execute("select asset_id, status, error_code from asset")}


def test_flushed_broker_every_stuck_record_is_rebuilt_and_delayed_or_slow_work_is_left_alone(
    worker_env, start_worker, redis_client
):
    from worker_contracts import Sender

    from tests.support.gatedorigin import GatedOrigin
    from tests.support.helpers import run_cli, wait_for
    from worker_service.database import Asset, init_database, session, utcnow

    origin = GatedOrigin()
    env = {
        **worker_env,
        "FETCH_ALLOW_HTTP": "true",
        "FETCH_ALLOWLIST": "127.0.0.1",
        "FETCH_READ_TIMEOUT_SECONDS": "120",
        "RECONCILE_INTERVAL_SECONDS": "1",
        "RECONCILE_GRACE_SECONDS": "3",
        # the delayed retry below must still be waiting when the test ends
        "RETRY_BACKOFF_BASE_MS": "300000",
        "RETRY_BACKOFF_MAX_MS": "600000",
    }
    storage = Path(env["STORAGE_ROOT"])
    sender = Sender(redis_client)
    assert run_cli(env, "migrate").returncode == 0
    try:
        # 1. three assets in `processing` (their fetch is held), then the worker tree dies
        origin.hold("p0", "p1", "p2")
        first = start_worker(env=env, threads=4)
        for name in ("p0", "p1", "p2"):
            sender.process_asset(name, f"{origin.url}/{name}")
        wait_for(
            lambda: [s for s, _ in _statuses(env).values()].count("processing") == 3, 30, 0.2, "3 processing"
        )
        first.kill_tree()
        # 2. two records the product wrote as `received` whose messages never arrived
        init_database(env["DATABASE_URL"])
        with session():
            for name in ("r0", "r1"):
                (storage / f"{name}.txt").write_text(f"received document {name}\n" * 10)
                Asset.create(asset_id=name, status="received", source=f"file:{name}.txt", updated_at=utcnow())
        # 3. the broker loses everything (a failover, an older AOF, an operator's FLUSHDB)
        redis_client.flushdb()
        origin.release("p0", "p1", "p2")
        # 4. a fresh worker; beside the lost work, a slow in-flight message and a delayed retry
        origin.hold("slow")
        origin.fail("retry")
        start_worker(env=env, threads=4)
        sender.process_asset("slow", f"{origin.url}/slow")
        sender.process_asset("retry", f"{origin.url}/retry")
        lost = ("p0", "p1", "p2", "r0", "r1")
        wait_for(
            lambda: all(_statuses(env).get(a, ("",))[0] == "extracted" for a in lost),
            90,
            0.5,
            "every lost record extracted",
        )
        time.sleep(6)  # several more rounds, each past the 3 s grace of the slow and the delayed record
        statuses = _statuses(env)
        assert statuses["slow"] == ("processing", None) and statuses["retry"][0] == "retrying"
        assert (origin.hits["slow"], origin.hits["retry"]) == (1, 1)  # never rebuilt, never run twice
        audit = json.loads(run_cli(env, "dlq", "audit", "--json").stdout)
        assert sorted(a["target"] for a in audit if a["action"] == "reconcile-requeued") == sorted(lost)
        origin.release("slow")
        wait_for(lambda: _statuses(env)["slow"][0] == "extracted", 30, 0.3, "the slow one extracted")
    finally:
        origin.close()
