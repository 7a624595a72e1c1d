"""Shared fixtures: real Redis (db 11, or 11 + n for xdist worker n; never db 0), PostgreSQL, RabbitMQ,
and real worker processes."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
import requests

from tests.support.fake_kommo import FakeKommo
from tests.support.fake_openrouter import FakeOpenRouter
from tests.support.helpers import (
    BIN,
    ROOT,
    WEB_PASSWORD,
    WEB_TOKEN,
    WorkerProcess,
    free_port,
    run_cli,
    unavailable,
    wait_for,
)

# Test modules import domain code, and `import actors` builds a broker and migrates a database:
# point both at throwaway places before anything is imported.
os.environ.setdefault("DATABASE_URL", f"sqlite:///{tempfile.mkdtemp(prefix='worker-tests-')}/import.db")
# Each pytest-xdist worker (gw0, gw1, ...) gets a Redis database of its own: 11, 12, ...; never db 0.
TEST_DB = 11 + int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
os.environ.setdefault(
    "BROKER_URL", os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/") + f"/{TEST_DB}"
)
REDIS_BASE = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
PG_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
RABBIT_URL = os.environ.get("TEST_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")


def _reachable(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=1):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def redis_url() -> str:
    url = f"{REDIS_BASE}/{TEST_DB}"
    try:
        redis.Redis.from_url(url, socket_connect_timeout=2).ping()
    except redis.RedisError as exc:
        unavailable(f"no Redis at {REDIS_BASE} ({exc}); run through `make test`, which starts one")
    return url


@pytest.fixture()
def redis_client(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    client.flushdb()  # this database belongs to this test process
    yield client
    client.close()


@pytest.fixture(scope="session")
def pg_url() -> str:
    if not _reachable("127.0.0.1", 5432):
        unavailable("PostgreSQL is not reachable on 127.0.0.1:5432")
    return PG_URL


@pytest.fixture(scope="session")
def rabbit_url() -> str:
    if not _reachable("127.0.0.1", 5672):
        unavailable("RabbitMQ is not reachable on 127.0.0.1:5672")
    return RABBIT_URL


@pytest.fixture()
def worker_env(tmp_path: Path, redis_url: str, redis_client: redis.Redis) -> dict[str, str]:
    storage = tmp_path / "storage"
    storage.mkdir()
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("dramatiq_", "WORKER_", "BROKER_", "PROMETHEUS_", "OTEL_", "SENTRY_"))
    }
    env.update(
        {
            "BROKER_URL": redis_url,
            "DATABASE_URL": f"sqlite:///{tmp_path}/worker.db",
            "STORAGE_ROOT": str(storage),
            "RETRY_BACKOFF_BASE_MS": "100",
            "RETRY_BACKOFF_MAX_MS": "1000",
            "HEARTBEAT_TIMEOUT_MS": "60000",
            "MAINTENANCE_INTERVAL_MS": "500",
            "METRICS_PORT": "0",  # tests run several workers at once; the metrics test picks its own port
            "METRICS_DIR": str(tmp_path / "metrics"),
            "LOG_FORMAT": "json",
            "LOG_LEVEL": "INFO",
            "TEST_PREFIX": "wtest",
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture()
def start_worker(
    worker_env: dict[str, str], tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []
    failed_before = request.session.testsfailed

    def start(env: dict[str, str] | None = None, **kwargs: Any) -> WorkerProcess:
        worker = WorkerProcess(env or worker_env, tmp_path / f"worker-{len(started)}.log", **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        if request.session.testsfailed > failed_before:
            worker.dump_stacks()  # a failed test leaves the stacks of what was still running in its log
        worker.stop()


@pytest.fixture()
def sender(redis_url: str) -> Callable[..., str]:
    """Enqueue a raw Dramatiq message (any actor, including test actors) the way a foreign sender would."""
    client = redis.Redis.from_url(redis_url)

    def send(actor: str, queue: str = "tests", options: dict | None = None, **kwargs: Any) -> str:
        message_id = str(uuid.uuid4())
        redis_id = str(uuid.uuid4())
        body = {
            "queue_name": queue,
            "actor_name": actor,
            "args": [],
            "kwargs": kwargs,
            "options": {**(options or {}), "redis_message_id": redis_id},
            "message_id": message_id,
            "message_timestamp": int(time.time() * 1000),
        }
        pipe = client.pipeline()
        pipe.hset(f"dramatiq:{queue}.msgs", redis_id, json.dumps(body, separators=(",", ":")))
        pipe.rpush(f"dramatiq:{queue}", redis_id)
        pipe.execute()
        return message_id

    return send


@pytest.fixture()
def start_web(worker_env: dict[str, str]) -> Iterator[Callable[..., tuple[str, dict[str, str]]]]:
    """Starts a real `worker web` on a free port, on the tests' database, with ``args`` and ``extra``
    settings; returns (base URL, env).  Every one started is stopped at the end of the test; ``.processes``
    lists them."""
    processes: list[subprocess.Popen] = []

    def start(*args: str, **extra: str) -> tuple[str, dict[str, str]]:
        port = free_port()
        env = {
            **worker_env,
            "WEB_PASSWORD": WEB_PASSWORD,
            "WEB_API_TOKEN": WEB_TOKEN,
            "WEB_PORT": str(port),
            **extra,
        }
        assert run_cli(env, "migrate").returncode == 0
        processes.append(
            subprocess.Popen(
                [str(BIN / "worker"), "web", *args],
                cwd=ROOT,
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                return requests.get(f"{base}/healthz", timeout=1).status_code == 200
            except requests.ConnectionError:
                return False

        wait_for(up, 30, 0.2, "dashboard up")
        return base, env

    start.processes = processes  # type: ignore[attr-defined]  # a test that measures the dashboard's memory
    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


@pytest.fixture()
def web(start_web: Callable[..., tuple[str, dict[str, str]]]) -> tuple[str, dict[str, str]]:
    """A real `worker web` with the tests' password and API token; (base URL, env)."""
    return start_web()


@pytest.fixture()
def chromium_path() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if not path:
        unavailable("Debian chromium is not installed (apt-get install chromium); .ci/run installs it")
    try:
        import playwright  # noqa: F401
    except ImportError:
        unavailable("playwright (python) is not installed")
    return path


# Tests that need real services or start processes are integration tests (tests/integration/, and any test using
# one of these fixtures anywhere); `make test-fast` runs the rest.
_INTEGRATION_FIXTURES = {
    "redis_url",
    "redis_client",
    "pg_url",
    "rabbit_url",
    "worker_env",
    "start_worker",
    "sender",
    "web",
    "start_web",
}


_INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if (
            _INTEGRATION_FIXTURES & set(getattr(item, "fixturenames", ()))
            or item.get_closest_marker("processes")
            or _INTEGRATION_DIR in Path(str(item.path)).parents
        ):
            item.add_marker(pytest.mark.integration)


@pytest.fixture()
def fake() -> Iterator[FakeOpenRouter]:
    """A fake OpenRouter on a free port (tests/support/fake_openrouter.py)."""
    server = FakeOpenRouter()
    yield server
    server.close()


@pytest.fixture()
def knowledge_env(worker_env: dict[str, str], fake: FakeOpenRouter) -> dict[str, str]:
    return {
        **worker_env,
        "OPENROUTER_API_KEY": fake.key,
        "OPENROUTER_BASE_URL": fake.base_url,
        "OPENROUTER_RPS": "20",
        "OPENROUTER_BURST": "2",
        "KNOWLEDGE_CHUNK_CHARS": "800",
        "KNOWLEDGE_CHUNK_OVERLAP": "80",
        "OPENROUTER_PAYMENT_PAUSE_SECONDS": "3",
    }


@pytest.fixture()
def kommo() -> Iterator[FakeKommo]:
    """A fake Kommo on a free port (tests/support/fake_kommo.py)."""
    fake = FakeKommo()
    yield fake
    fake.close()


@pytest.fixture()
def crm_env(worker_env: dict[str, str], kommo: FakeKommo) -> dict[str, str]:
    return {
        **worker_env,
        "KOMMO_BASE_URL": kommo.base_url,
        "KOMMO_ACCESS_TOKEN": "llt-1",
        "KOMMO_WEBHOOK_TOKEN": "hook-secret",
        "KOMMO_RPS": "7",
        "KOMMO_BURST": "1",
    }
