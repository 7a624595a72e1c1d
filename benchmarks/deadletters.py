"""The dashboard and its API with 10^6 dead letters and 10^6 assets on PostgreSQL: the pages people open, timed
over HTTP."""

from __future__ import annotations

import os
import statistics
import subprocess
import time
from typing import Any

import requests

from benchmarks.common import BIN, PG_URL, REDIS_URL, ROOT, postgres_skipped, psycopg2_connection

TOKEN = "bench-api-token-0123456789"
TYPES = ("retries_exhausted", "permanent_error", "crash_loop", "invalid_payload", "time_limit")
CODES = ("corrupt", "encrypted", "fetch_failed", "timeout")
ACTORS = ("process_asset", "extract_knowledge", "crm_upsert_contact", "crm_create_lead", "crm_add_note")


def _fill(url: str, total: int) -> float:
    """``total`` dead letters in one INSERT: five actors and error types, a month of failure times."""

    started = time.perf_counter()
    conn = psycopg2_connection(url)
    types = "ARRAY[" + ",".join(f"'{t}'" for t in TYPES) + "]"
    actors = "ARRAY[" + ",".join(f"'{a}'" for a in ACTORS) + "]"
    codes, statuses, knowledge, kinds = (
        "ARRAY[" + ",".join(f"'{v}'" for v in values) + "]"
        for values in (
            CODES,
            ("received", "processing", "retrying", "extracted", "failed"),
            ("pending", "processing", "retrying", "done", "skipped", "failed"),
            ("pdf", "docx", "xlsx", "image"),
        )
    )
    with conn.cursor() as cur:
        cur.execute(f"""
            INSERT INTO dead_letter (message_id, queue, actor, args, kwargs, options, error_type, error_code,
                                     asset_id, error_message, attempts, failed_at, state)
            SELECT md5(g::text), 'assets', ({actors})[1 + g % 5], '[]', '{{"asset_id": "a-' || g || '"}}', '{{}}',
                   ({types})[1 + (g / 7) % 5], ({codes})[1 + (g / 3) % 4], 'a-' || g, 'boom ' || g, 3,
                   now() AT TIME ZONE 'UTC' - (g || ' seconds')::interval, 'dead'
            FROM generate_series(1, {total}) AS g""")
        # as many asset records, in every state, a month of upload times
        cur.execute(f"""
            INSERT INTO asset (asset_id, filename, workspace, status, knowledge_status, detected_type, error_code,
                               size, gen_ts, gen_id, attempts, no_text, knowledge_gen_ts, knowledge_gen_id, knowledge_attempts,
                               created_at, updated_at)
            SELECT 'a-' || g, 'file-' || g || '.pdf', 'default', ({statuses})[1 + g % 5],
                   ({knowledge})[1 + (g / 5) % 6], ({kinds})[1 + g % 4], ({codes})[1 + (g / 3) % 4], g, g, '', 1, false, 0, '', 0,
                   now() AT TIME ZONE 'UTC' - (g || ' seconds')::interval,
                   now() AT TIME ZONE 'UTC' - (g || ' seconds')::interval
            FROM generate_series(1, {total}) AS g""")
        cur.execute("ANALYZE dead_letter")
        cur.execute("ANALYZE asset")
    conn.close()
    return time.perf_counter() - started


def _deep_cursor(url: str) -> str:
    """The cursor after the asset half way down the list (a page as deep as 10^6 records get)."""
    conn = psycopg2_connection(url)
    with conn.cursor() as cur:
        cur.execute(
            "SELECT created_at, asset_id FROM asset ORDER BY created_at DESC, asset_id DESC "
            "OFFSET (SELECT count(*) / 2 FROM asset) LIMIT 1"
        )
        created, asset_id = cur.fetchone()
    conn.close()
    from worker_service.database.browse import encode_cursor
    from worker_service.database.models import Asset

    return encode_cursor(Asset(created_at=created, asset_id=asset_id))


def _timed(base: str, path: str, runs: int = 5) -> float:
    """Median seconds of ``runs`` GETs of ``path`` (after one warm-up)."""
    headers = {"Authorization": f"Bearer {TOKEN}"}
    times = []
    for i in range(runs + 1):
        started = time.perf_counter()
        answer = requests.get(base + path, headers=headers, timeout=120)
        elapsed = time.perf_counter() - started
        if answer.status_code != 200:
            raise RuntimeError(f"{path}: {answer.status_code} {answer.text[:300]}")
        if i:
            times.append(elapsed)
    return statistics.median(times)


#: the cursor of the asset 500,000 seconds old (as browse.encode_cursor writes it; the time is filled in at run time)
DEEP_CURSOR = "{deep}"
PAGES = {
    "GET /dead-letters (first page)": "/dead-letters",
    "GET /dead-letters, a deep page (offset)": "/dead-letters?page=2000",
    "GET /dead-letters, a deep page (before)": "/dead-letters?before=100000",
    "GET /dead-letters?error_type=crash_loop": "/dead-letters?error_type=crash_loop",
    "GET /api/dead-letters?limit=100": "/api/dead-letters?limit=100",
    "GET /api/dead-letters, deep (offset)": "/api/dead-letters?limit=100&offset=200000",
    "GET /api/dead-letters, deep (cursor)": "/api/dead-letters?limit=100&cursor=100000",
    "GET /dead-letters?error_type=corrupt (a domain code)": "/dead-letters?error_type=corrupt",
    "GET /api/overview": "/api/overview",
    "GET /assets (first page, counts)": "/assets",
    "GET /assets?status=failed": "/assets?status=failed",
    "GET /api/assets?limit=100": "/api/assets?limit=100",
    "GET /api/assets?knowledge_status=skipped&type=pdf": "/api/assets?knowledge_status=skipped&type=pdf",
    "GET /api/assets, deep (cursor)": "/api/assets?limit=100&cursor=" + DEEP_CURSOR,
    "GET /api/assets?q=file-99999 (file name)": "/api/assets?q=file-99999",
}


def dashboard_at_scale() -> list[dict[str, Any]]:
    """Dashboard: the dead-letter pages and the overview with 10^4 and 10^6 dead letters on PostgreSQL."""

    from tests.support.helpers import free_port, pg_schema_url

    skipped = postgres_skipped("dashboard")
    if skipped:
        return skipped
    rows: list[dict[str, Any]] = []
    first: dict[str, float] = {}
    for total in (10_000, 1_000_000):
        url = pg_schema_url(PG_URL, "bench_dashboard")
        port = free_port()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("WORKER_", "WEB_"))},
            "DATABASE_URL": url,
            "BROKER_URL": REDIS_URL,
            "WEB_PORT": str(port),
            "WEB_API_TOKEN": TOKEN,
            "WEB_PASSWORD": "bench-password-0123",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
        }
        assert (
            subprocess.run(
                [str(BIN / "worker"), "migrate"], env=env, cwd=ROOT, capture_output=True
            ).returncode
            == 0
        )
        filled = _fill(url, total)
        web = subprocess.Popen(
            [str(BIN / "worker"), "web"],
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    if requests.get(base + "/healthz", timeout=1).status_code == 200:
                        break
                except requests.ConnectionError:
                    time.sleep(0.2)
            for name, path in PAGES.items():
                seconds = _timed(
                    base, path.replace("{deep}", _deep_cursor(url)) if "{deep}" in path else path
                )
                ratio = seconds / first.setdefault(name, seconds)
                rows.append(
                    {
                        "benchmark": "dashboard",
                        "variant": f"{total:,} dead letters: {name}",
                        "value": round(seconds * 1000, 1),
                        "unit": "ms",
                        "ratio": round(ratio, 2),
                        "notes": f"filled in {filled:.0f} s; goal < 200 ms"
                        if name.endswith("(first page)")
                        else "goal < 200 ms",
                    }
                )
        finally:
            web.terminate()
            web.wait(10)
    rows += _bulk_actions(url)  # on the 10^6 of the last round
    return rows


def _bulk_actions(url: str) -> list[dict[str, Any]]:
    """Requeue 10^5 dead letters (what "Requeue all matching" and ``worker dlq requeue --all`` run, into a real
    Redis broker), then delete 10^5 others (one conditional UPDATE)."""
    import redis

    from worker_service.brokers import ReliableRedisBroker
    from worker_service.database import init_database
    from worker_service.deadletters import DeadLetterStore, Filter

    init_database(url)
    client = redis.Redis.from_url(REDIS_URL)
    client.flushdb()
    store = DeadLetterStore(ReliableRedisBroker(client=client))
    started = time.perf_counter()
    requeued = store.requeue_matching(Filter(actor="process_asset"), "bench", limit=100_000)
    requeue_s = time.perf_counter() - started
    assert len(requeued) == 100_000 and client.llen("dramatiq:assets") == 100_000
    started = time.perf_counter()
    deleted = store.delete_matching(Filter(actor="extract_knowledge", error_type="crash_loop"), "bench")
    delete_s = time.perf_counter() - started
    client.flushdb()
    return [
        {
            "benchmark": "dashboard",
            "variant": "requeue 100,000 of 10^6 dead letters",
            "value": round(requeue_s, 1),
            "unit": "s",
            "notes": f"{100_000 / requeue_s:,.0f} per second, batches of 500",
        },
        {
            "benchmark": "dashboard",
            "variant": f"delete {deleted:,} of 10^6 dead letters",
            "value": round(delete_s, 1),
            "unit": "s",
            "notes": "one UPDATE",
        },
    ]
