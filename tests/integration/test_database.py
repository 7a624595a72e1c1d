"""The data layer and the worker command on real services: TLS broker, SQLite under concurrent writer processes,
PostgreSQL (and its outages)."""

from __future__ import annotations

import multiprocessing
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.support.helpers import BIN, WorkerProcess, free_port, pg_schema_url, unavailable, wait_for


@pytest.fixture()
def tls_redis(tmp_path: Path):
    if not shutil.which("redis-server") or not shutil.which("openssl"):
        unavailable("redis-server or openssl not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    port = free_port()
    server = subprocess.Popen(
        [
            "redis-server",
            "--port",
            "0",
            "--tls-port",
            str(port),
            "--tls-cert-file",
            str(cert),
            "--tls-key-file",
            str(key),
            "--tls-ca-cert-file",
            str(cert),
            "--tls-auth-clients",
            "no",
            "--save",
            "",
            "--appendonly",
            "no",
            "--bind",
            "127.0.0.1",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={cert}"
    import redis

    wait_for(lambda: _pings(redis, url), 10, what="TLS redis")
    yield url
    server.terminate()
    server.wait(10)


def _pings(redis_module, url: str) -> bool:
    try:
        return bool(redis_module.Redis.from_url(url, socket_timeout=1).ping())
    except Exception:
        return False


def test_worker_over_tls_redis(tls_redis: str, worker_env, start_worker, tmp_path):
    import uuid

    import redis

    env = {**worker_env, "BROKER_URL": tls_redis}
    client = redis.Redis.from_url(tls_redis)
    start_worker(env=env)
    from worker_contracts.sender import encode

    redis_id = str(uuid.uuid4())
    body = {
        "queue_name": "tests",
        "actor_name": "noop",
        "args": [],
        "kwargs": {"tag": "tls"},
        "options": {"redis_message_id": redis_id},
        "message_id": str(uuid.uuid4()),
        "message_timestamp": int(time.time() * 1000),
    }
    client.hset("dramatiq:tests.msgs", redis_id, encode(body))
    client.rpush("dramatiq:tests", redis_id)
    wait_for(lambda: client.lrange("wtest:done", 0, -1) == [b"tls"], 30, what="the message over TLS")


def test_worker_run_starts_each_group_sized_from_settings_and_ctrl_c_reaches_each_once(worker_env, tmp_path):
    env = {
        **worker_env,
        "ASSETS_THREADS": "3",
        "KNOWLEDGE_THREADS": "5",
        "CRM_THREADS": "2",
        "CRM_PROCESSES": "2",
        "SHUTDOWN_GRACE_SECONDS": "5",
    }
    worker = WorkerProcess(env, tmp_path / "run.log", command=[str(BIN / "worker"), "run"])
    try:

        def ready() -> list[dict]:
            found = [r for r in worker.logs() if r.get("message", "").startswith("Worker process ready")]
            return found if len(found) >= 4 else []

        consumed = sorted(
            (r["worker_threads"], r["queues"]) for r in wait_for(ready, 90, 0.2, "4 worker processes")
        )
        assert consumed == [(2, ["crm"]), (2, ["crm"]), (3, ["assets"]), (5, ["knowledge"])]
        started = sorted(r["message"] for r in worker.logs() if r.get("message", "").startswith("starting: "))
        assert started == [
            "starting: dramatiq actors --queues assets --processes 1 --threads 3 --worker-shutdown-timeout 5000 "
            "--skip-logging",
            "starting: dramatiq actors --queues crm --processes 2 --threads 2 --worker-shutdown-timeout 5000 "
            "--skip-logging",
            "starting: dramatiq actors --queues knowledge --processes 1 --threads 5 --worker-shutdown-timeout 5000 "
            "--skip-logging",
        ]
        # Ctrl-C in a terminal signals the whole foreground group; each Dramatiq main must get it once,
        # or it takes the second signal as "kill now" (regression: it used to get it twice).
        os.killpg(worker.process.pid, signal.SIGINT)
        assert worker.wait(30) == 0
        assert not [r for r in worker.logs() if "Killing worker process" in r.get("message", "")]
        assert len([r for r in worker.logs() if r.get("message") == "Worker has been shut down."]) == 4
    finally:
        worker.stop()


def _hammer(url: str, worker_no: int, rows: int) -> None:
    from worker_service.database import Asset, init_database, session

    init_database(url)
    for i in range(rows):
        with session(transaction=True):
            Asset.insert(asset_id=f"w{worker_no}-{i}", status="received").execute()
            Asset.update(attempts=Asset.attempts + 1).where(Asset.asset_id == "shared").execute()


def test_sqlite_takes_concurrent_writers_from_several_processes(tmp_path):
    from worker_service.database import Asset, init_database, migrate, session

    url = f"sqlite:///{tmp_path}/concurrent.db"
    init_database(url)
    migrate()
    with session():
        Asset.create(asset_id="shared", status="received")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_hammer, args=(url, n, 100)) for n in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with session():
        assert Asset.select().count() == 401
        assert Asset.get_by_id("shared").attempts == 400
        assert init_database(url).execute_sql("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_postgres_dead_letter_store_roundtrip(pg_url):
    from dramatiq.message import Message

    from middleware.deadletters import DeadLetters
    from worker_service.database import DeadLetter, init_database, migrate, session
    from worker_service.outcome import Dead

    init_database(pg_schema_url(pg_url, "wtest_dlq"))
    migrate()
    message = Message(
        queue_name="assets",
        actor_name="process_asset",
        args=(),
        kwargs={"asset_id": "x"},
        options={"retries": 2},
        message_id="m-1",
        message_timestamp=int(time.time() * 1000),
    )
    DeadLetters().record(message, Dead.of("retries_exhausted", RuntimeError("final")))
    with session():
        row = DeadLetter.get()
    assert (row.message_id, row.error_type, row.error_message, row.attempts) == (
        "m-1",
        "retries_exhausted",
        "final",
        3,
    )


def test_postgres_sessions_get_the_statement_timeout_from_settings(pg_url):
    from worker_service.database import DatabaseUnavailable, init_database, session

    # the URL's own options (the schema's search_path) are kept beside the timeout
    init_database(pg_schema_url(pg_url, "wtest_timeout"), statement_timeout_ms=300)
    with session() as db:
        assert db.execute_sql("SHOW statement_timeout").fetchone()[0] == "300ms"
        assert db.execute_sql("SHOW search_path").fetchone()[0] == "wtest_timeout"
    started = time.monotonic()
    with pytest.raises(DatabaseUnavailable, match="statement timeout"), session() as db:
        db.execute_sql("SELECT pg_sleep(10)")
    assert time.monotonic() - started < 5
    with session() as db:  # the next unit of work reconnects
        assert db.execute_sql("SELECT 1").fetchone()[0] == 1


def test_migrations_on_postgres_are_versioned_and_idempotent(pg_url):
    from tests.support.helpers import pg_schema_url
    from tests.support.migrations import check_versioned_and_idempotent

    check_versioned_and_idempotent(pg_schema_url(pg_url, "wtest_migrations"))


def test_the_dead_letter_tally_on_postgres_follows_every_write_and_an_upgrade_fills_it(pg_url):
    from tests.support.migrations import check_the_dead_letter_tally

    check_the_dead_letter_tally(pg_schema_url(pg_url, "wtest_tally"))


def test_a_postgres_database_of_the_first_round_upgrades_keeping_its_rows(pg_url):
    from tests.support.helpers import pg_schema_url
    from tests.support.migrations import check_a_version_3_database_upgrades_keeping_its_rows

    check_a_version_3_database_upgrades_keeping_its_rows(pg_schema_url(pg_url, "wtest_migration4"))
