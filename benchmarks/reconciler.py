"""Reconciler round time against the number of records under way, on PostgreSQL (the lease index)."""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from benchmarks.common import PG_URL, REDIS_URL, postgres_skipped, psycopg2_connection

SIZES = (10_000, 100_000, 1_000_000)
EXPIRED = 100


class _QuietBroker:
    """What the reconciler asks a broker: an empty queue, and where rebuilt messages go (counted)."""

    actors: dict[str, Any] = {}

    def __init__(self) -> None:
        self.enqueued = 0

    def backlog(self, queue_name: str) -> int:
        return 0

    def tracked_messages(self, queues: Any) -> None:
        return None

    def enqueue(self, message: Any, *, delay: int | None = None) -> Any:
        self.enqueued += 1
        return message


def _literal(field: Any) -> str:
    default = field.default
    if callable(default):
        return "now() AT TIME ZONE 'UTC'"
    if isinstance(default, bool):
        return "true" if default else "false"
    if isinstance(default, int | float):
        return str(default)
    return "'" + str(default).replace("'", "''") + "'"


def _fill(url: str, total: int) -> None:
    """``total`` asset records in ``processing``, all leased now but EXPIRED, leased an hour ago (one INSERT)."""

    from worker_service.database import Asset

    fixed = {
        "asset_id": "'a' || g",
        "status": "'processing'",
        "source": "'file:' || g || '.txt'",
        "lease_at": f"CASE WHEN g <= {EXPIRED} THEN now() AT TIME ZONE 'UTC' - interval '1 hour' "
        "ELSE now() AT TIME ZONE 'UTC' END",
        "gen_ts": "g",
        "gen_id": "'gen-' || g",
    }
    columns, values = [], []
    for field in Asset._meta.sorted_fields:
        if field.name in fixed:
            columns.append(field.column_name)
            values.append(fixed[field.name])
        elif not field.null and field.default is not None:
            columns.append(field.column_name)
            values.append(_literal(field))
    conn = psycopg2_connection(url)
    with conn.cursor() as cur:
        cur.execute(
            f"INSERT INTO asset ({', '.join(columns)}) SELECT {', '.join(values)} "
            f"FROM generate_series(1, {total}) AS g"
        )
        cur.execute("ANALYZE asset")
    conn.close()


def _query_by_updated_at(url: str) -> float:
    """The candidate query of the queue-scanning reconciler this one replaced (status, then updated_at): what
    finding the records to look at cost before, without the queue scan that followed it."""
    from datetime import timedelta

    from worker_service.database import Asset, session, utcnow

    started = time.perf_counter()
    with session():
        list(
            Asset.select()
            .where(
                Asset.status.in_(("received", "processing", "retrying")),
                Asset.updated_at < utcnow() - timedelta(seconds=300),
            )
            .order_by(Asset.updated_at)
            .limit(1000)
        )
    return time.perf_counter() - started


def round_times() -> list[dict[str, Any]]:
    """Reconciler: round time with 10^4, 10^5, 10^6 records under way on PostgreSQL, 100 past their lease."""

    from tests.support.helpers import pg_schema_url
    from worker_service.database import init_database, migrate
    from worker_service.reconciliation import Reconciler

    skipped = postgres_skipped("reconciler")
    if skipped:
        return skipped
    client = redis.Redis.from_url(REDIS_URL)
    rows: list[dict[str, Any]] = []
    first: dict[str, float] = {}
    sizes = SIZES if not os.environ.get("BENCH_QUICK") else SIZES[:2]
    for total in sizes:
        client.flushdb()
        url = pg_schema_url(PG_URL, "bench_reconciler")
        init_database(url)
        migrate()
        started = time.perf_counter()
        _fill(url, total)
        filled = time.perf_counter() - started
        broker = _QuietBroker()
        reconciler = Reconciler(broker, client, grace_s=300, interval_s=60)
        reconciler.purged_at = time.monotonic()  # retention is not what is measured
        timings = {}
        for name in ("suspects", "repairs"):
            started = time.perf_counter()
            repairs = reconciler.run_once()
            timings[name] = time.perf_counter() - started
            assert name == "suspects" and not repairs or len(repairs) == EXPIRED, (name, len(repairs))
        assert broker.enqueued == EXPIRED
        timings["before: candidates by updated_at"] = _query_by_updated_at(url)
        for name, seconds in timings.items():
            base = first.setdefault(name, seconds)
            rows.append(
                {
                    "benchmark": "reconciler",
                    "variant": f"{total:,} under way, round: {name}",
                    "value": round(seconds * 1000, 1),
                    "unit": "ms",
                    "ratio": round(seconds / base, 2),
                    "notes": {
                        "suspects": f"{EXPIRED} expired; filled in {filled:.0f} s",
                        "repairs": "goal: flat, < 1 s at 10^6",
                    }.get(name, ""),
                }
            )
    return rows
