"""The fleet at a glance (``GET /api/overview``): queues, worker processes, upstreams, recent failures, events.

Read on request from Redis (queues, the workers' reports, upstream pauses and spend) and the database
(dead letters of the last hour, the event outbox); nothing is kept between requests.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import peewee

from settings import Settings
from worker_service.database import DeadLetter, session, utcnow
from worker_service.web.metrics import UPSTREAMS, queue_stats

#: how long a worker lost (silent past the heartbeat timeout) stays on the list, marked lost
LOST_SHOWN_S = 600.0


def workers(client: Any, ns: str, silent_after_s: float, late_after_s: float) -> list[dict[str, Any]]:
    """The worker processes that reported, each with its ``state``: ``live`` (a report within ``late_after_s``),
    ``late`` (silent longer, not yet past the heartbeat timeout ``silent_after_s``) or ``lost`` (past it: its
    messages are recovered by the others); a lost one is listed for LOST_SHOWN_S, then its report removed.  A
    worker that stops gracefully withdraws its report at once (middleware.recovery)."""
    now = time.time()
    found, gone = [], []
    for field, raw in client.hgetall(f"{ns}:__workers__").items():
        try:
            info = json.loads(raw)
            age = now - float(info["heartbeat_at"])
        except (ValueError, KeyError, TypeError):
            gone.append(field)
            continue
        if age > silent_after_s + LOST_SHOWN_S:
            gone.append(field)
            continue
        state = "live" if age <= late_after_s else "late" if age <= silent_after_s else "lost"
        found.append(
            {
                "host": info.get("host"),
                "pid": info.get("pid"),
                "state": state,
                "threads": info.get("threads"),
                "busy": info.get("busy") if state == "live" else 0,
                "heartbeat_age_seconds": round(max(0.0, age), 1),
                "rss_bytes": info.get("rss_bytes"),
                "queues": info.get("queues", []),
                "paused": info.get("paused", []),
                "current": info.get("current", []) if state == "live" else [],
            }
        )
    if gone:
        client.hdel(f"{ns}:__workers__", *gone)
    return sorted(found, key=lambda w: (w["state"] != "live", str(w["host"]), int(w["pid"] or 0)))


def upstreams(client: Any, ns: str, settings: Settings) -> dict[str, dict[str, Any]]:
    from worker_service.knowledge.budgets import spend_key
    from worker_service.ratelimit import RateLimiter

    limiter = RateLimiter(client, {}, namespace=ns)  # a reader: it takes no slot
    out: dict[str, dict[str, Any]] = {}
    for upstream in UPSTREAMS:
        out[upstream] = {
            "paused_for_seconds": round(limiter.paused_for(upstream) / 1000, 1),
            "pause_reason": limiter.pause_reason(upstream),
            "rate_used_rps": round(limiter.rate_used(upstream), 2),
        }
    spent = client.get(spend_key(ns, "openrouter", datetime.now(UTC)))
    out["openrouter"].update(
        {
            "spend_today_usd": round(float(spent), 6) if spent else 0.0,
            "daily_budget_usd": settings.openrouter_daily_budget_usd,
            "rate_limit_rps": settings.openrouter_rps,
        }
    )
    out["kommo"]["rate_limit_rps"] = settings.kommo_rps
    # what is switched off says so: without a key every asset's knowledge ends skipped
    out["openrouter"]["off_reason"] = None if settings.openrouter_api_key else "OPENROUTER_API_KEY is not set"
    out["kommo"]["off_reason"] = (
        None
        if (settings.kommo_base_url and (settings.kommo_access_token or settings.kommo_refresh_token))
        else "KOMMO_BASE_URL and a token are not set"
    )
    return out


def dead_letters_last_hour() -> dict[str, int]:
    with session():
        rows = (
            DeadLetter.select(DeadLetter.error_type, peewee.fn.COUNT(DeadLetter.id))
            .where(DeadLetter.failed_at >= utcnow() - timedelta(hours=1))
            .group_by(DeadLetter.error_type)
            .tuples()
        )
        return {error_type: int(count) for error_type, count in rows}


def dead_letters_per_minute(minutes: int) -> dict[str, int]:
    """Dead letters per minute ("YYYYmmddHHMM", UTC) over the last ``minutes``: every way a message failed for good,
    the undecodable and unknown-actor ones the consumer dead-letters included (what the failed-messages page
    lists; the workers' per-minute counts see only messages that reached an actor)."""
    from worker_service.database.connection import is_sqlite

    minute = (
        peewee.fn.strftime("%Y%m%d%H%M", DeadLetter.failed_at)
        if is_sqlite()
        else peewee.fn.to_char(peewee.fn.date_trunc("minute", DeadLetter.failed_at), "YYYYMMDDHH24MI")
    )
    with session():
        rows = (
            DeadLetter.select(minute, peewee.fn.COUNT(DeadLetter.id))
            .where(DeadLetter.failed_at >= utcnow() - timedelta(minutes=minutes))
            .group_by(minute)
            .tuples()
        )
        return {str(stamp): int(n) for stamp, n in rows}


def throughput(
    client: Any, ns: str, minutes: int, bucket: int, failed: dict[str, int] | None = None
) -> dict[str, list[Any]]:
    """Messages done and failed per ``bucket`` minutes over the last ``minutes`` (middleware.throughput);
    ``failed``: per minute, in place of the workers' own failed counts (dead_letters_per_minute)."""
    now = datetime.now(UTC).replace(second=0, microsecond=0)
    stamps = [now - timedelta(minutes=m) for m in range(minutes - 1, -1, -1)]
    pipe = client.pipeline(transaction=False)
    for stamp in stamps:
        pipe.hgetall(f"{ns}:__stats__.{stamp:%Y%m%d%H%M}")
    labels: list[str] = []
    done: list[int] = []
    fails: list[int] = []
    for i, (stamp, counts) in enumerate(zip(stamps, pipe.execute(), strict=True)):
        if i % bucket == 0:
            labels.append(f"{stamp:%H:%M}" if minutes <= 60 else f"{stamp:%d.%m %H:%M}")
            done.append(0)
            fails.append(0)
        for field, value in counts.items():
            outcome = field.decode().rsplit(":", 1)[-1]
            if outcome != "failed":
                done[-1] += int(value)
            elif failed is None:
                fails[-1] += int(value)
        if failed is not None:
            fails[-1] += failed.get(f"{stamp:%Y%m%d%H%M}", 0)
    return {"labels": labels, "done": done, "failed": fails}


def actor_stats(client: Any, ns: str, minutes: int) -> list[dict[str, Any]]:
    """Per actor over the last ``minutes``: messages processed (done + failed + retried attempts), done, failed for
    good, retried, and p50/p95 run time in seconds (middleware.throughput's per-minute counts), busiest first."""
    from worker_service.observability.runtimes import quantile

    now = datetime.now(UTC).replace(second=0, microsecond=0)
    pipe = client.pipeline(transaction=False)
    for m in range(minutes):
        pipe.hgetall(f"{ns}:__actors__.{now - timedelta(minutes=m):%Y%m%d%H%M}")
    totals: dict[str, dict[str, int]] = {}
    for counts in pipe.execute():
        for field, value in counts.items():
            actor, _, name = field.decode().rpartition(":")
            row = totals.setdefault(actor, {})
            row[name] = row.get(name, 0) + int(value)
    out = []
    for actor, row in totals.items():
        buckets = {int(k[2:]): n for k, n in row.items() if k.startswith("le") and k[2:].isdigit()}
        p50, p95 = quantile(0.5, buckets), quantile(0.95, buckets)
        done, failed, retried = row.get("done", 0), row.get("failed", 0), row.get("retried", 0)
        out.append(
            {
                "actor": actor,
                "processed": done + failed + retried,
                "done": done,
                "failed": failed,
                "retried": retried,
                "p50_seconds": None if p50 is None else round(p50, 3),
                "p95_seconds": None if p95 is None else round(p95, 3),
            }
        )
    return sorted(out, key=lambda r: (-r["processed"], r["actor"]))


def overview(
    broker_client: Any | None,
    limiter_client: Any,
    settings: Settings,
    ns: str = "dramatiq",
    *,
    shards: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The pinned ``/api/overview`` document (DESIGN.md): ``queues`` and ``workers``, and more keys; ``shards``:
    BROKER_SHARDS' clients by queue."""
    from worker_service.outcome_events import lag

    pending, age = lag()
    failed = dead_letters_per_minute(1440)
    return {
        "queues": queue_stats(broker_client, ns, shards) if broker_client is not None else [],
        "workers": workers(
            broker_client,
            ns,
            settings.heartbeat_timeout_ms / 1000,
            late_after_s=3 * settings.maintenance_interval_ms / 1000,
        )
        if broker_client is not None
        else [],
        "upstreams": upstreams(limiter_client, ns, settings),
        "dead_letters_last_hour": dead_letters_last_hour(),
        "events": {"pending": pending, "oldest_pending_seconds": round(age, 1)},
        "throughput": {
            "last_hour": throughput(limiter_client, ns, 60, 1, failed=failed),
            "last_day": throughput(limiter_client, ns, 1440, 30, failed=failed),
        },
        "at": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
