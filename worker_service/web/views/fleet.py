"""The overview (the home page, ``GET /api/overview``) and the queue controls: pause, resume, purge.

Pausing is fleet-wide (middleware.queuepause: consumers stop starting the queue's messages within
2 s, nothing is lost); purging needs the number of messages that go, confirmed.  Both are audited.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, flash, render_template, request

from worker_service.web.views import json_response, principal, see_other, services, text

blueprint = Blueprint("fleet", __name__)
FAILED_LIST_ARGS = {"actor", "queue", "error_type", "state", "since", "until", "page"}


def overview_data() -> dict[str, Any]:
    from settings import get_settings
    from worker_service.brokers.redis import ReliableRedisBroker
    from worker_service.web.overview import overview

    broker = services().broker
    if not isinstance(broker, ReliableRedisBroker):
        return overview(None, services().limiter_client, get_settings())
    return overview(broker.client, services().limiter_client, get_settings(), shards=broker.shards)


@blueprint.get("/api/overview")
def api_overview() -> Response:
    return json_response(overview_data())


@blueprint.get("/")
@blueprint.get("/overview")
def overview_page() -> Response | str:
    from worker_service.web.charts import line_chart

    if request.path == "/" and FAILED_LIST_ARGS & set(request.args):
        return see_other("/dead-letters?" + urlencode(list(request.args.items(multi=True))))  # links of old
    data = overview_data()
    hour, day = data["throughput"]["last_hour"], data["throughput"]["last_day"]
    context = {
        "o": data,
        "can_change": principal().can_change,
        "chart_hour": line_chart(
            hour["labels"],
            {"done": hour["done"], "failed": hour["failed"]},
            title="messages per minute, last hour",
        ),
        "chart_day": line_chart(
            day["labels"],
            {"done": day["done"], "failed": day["failed"]},
            title="messages per 30 minutes, last day",
        ),
    }
    if request.args.get("partial"):  # the page's own refresh: the body only
        return render_template("overview_body.html", **context)
    return render_template("overview.html", nav="overview", **context)


def actors_data() -> dict[str, Any]:
    from worker_service.web.overview import actor_stats

    client = services().limiter_client  # middleware.throughput writes to the rate limiter's Redis
    return {
        "last_hour": actor_stats(client, "dramatiq", 60),
        "last_day": actor_stats(client, "dramatiq", 1440),
    }


@blueprint.get("/actors")
def actors_page() -> str:
    return render_template("actors.html", nav="actors", stats=actors_data())


@blueprint.get("/api/actors")
def api_actors() -> Response:
    """``{"last_hour": [ROW, ...], "last_day": [...]}``, ROW: actor, processed, done, failed, retried, p50_seconds,
    p95_seconds (Flower's "tasks by type")."""
    return json_response(actors_data())


def effective_settings() -> dict[str, Any]:
    """Every setting as this dashboard process has it, secrets masked (what ``worker check --verbose`` prints)."""
    from settings import get_settings

    return get_settings().masked()


@blueprint.get("/config")
def config_page() -> str:
    return render_template("config.html", nav="config", settings=effective_settings())


@blueprint.get("/api/config")
def api_config() -> Response:
    return json_response(effective_settings())


@blueprint.post("/overview/queues/<queue>/<any(pause, resume):action>")
def pause_page(queue: str, action: str) -> Response:
    _status, body = set_paused(queue, action)
    flash(body.get("error") or f"Queue {queue}: {action}d.")
    return see_other("/")


@blueprint.post("/api/queues/<queue>/<any(pause, resume):action>")
def api_pause(queue: str, action: str) -> Response:
    status, body = set_paused(queue, action)
    return json_response(body, status)


@blueprint.get("/overview/queues/<queue>/purge")
def purge_confirm(queue: str) -> Response | str:
    broker = services().redis_broker(queue)
    if broker is None:
        return text(f"No queue {queue} to purge (or not a Redis broker).", 404)
    return render_template(
        "purge.html",
        nav="overview",
        queue=queue,
        count=broker.waiting_count(queue),
        held=broker.held_delayed_count(queue),
    )


@blueprint.post("/overview/queues/<queue>/purge")
def purge_page(queue: str) -> Response:
    _status, body = purge(queue, request.form.get("confirm"))
    flash(body.get("error") or f"Purged {body['purged']} message(s) from {queue}.")
    return see_other("/")


@blueprint.post("/api/queues/<queue>/purge")
def api_purge(queue: str) -> Response:
    status, body = purge(queue, request.values.get("confirm"))
    return json_response(body, status)


def set_paused(queue: str, action: str) -> tuple[int, dict[str, Any]]:
    """Pause or resume a queue for the whole fleet (its messages are not started meanwhile); audited."""
    from worker_service.database import AuditEntry, session

    broker = services().pausable_broker(queue)
    if broker is None:
        return 404, {"error": f"unknown queue {queue} (or no Redis to keep the pause in)"}
    changed = broker.set_paused(queue, action == "pause")
    with session(transaction=True):
        AuditEntry.create(
            who=principal().audit_name, action=f"queue-{action}", target=queue, count=int(changed)
        )
    return 200, {"queue": queue, "paused": action == "pause", "changed": changed}


def purge(queue: str, confirm: str | None) -> tuple[int, dict[str, Any]]:
    """Delete what waits in ``queue`` once the caller confirmed how many go; the asset records of the
    deleted messages end ``failed`` / ``purged`` (else the reconciler would rebuild them); audited."""
    from worker_service.database import AuditEntry, session
    from worker_service.database import tracks as tr

    broker = services().redis_broker(queue)
    if broker is None:
        return 404, {"error": f"no queue {queue} to purge (or not a Redis broker)"}
    count = broker.waiting_count(queue)
    if confirm != str(count):
        return 409, {
            "error": f"confirm with the number of messages that go: {count}",
            "waiting": count,
            "held_delayed": broker.held_delayed_count(queue),
        }
    purged = broker.purge(queue)
    who = principal().audit_name
    ended = 0
    with session(transaction=True):
        for data in purged:
            track = tr.TRACKS.get(tr.TRACKED_ACTORS.get(str(data.get("actor_name")), ""))
            kwargs = data.get("kwargs") if isinstance(data.get("kwargs"), dict) else {}
            if track is None or not isinstance(kwargs.get("asset_id"), str):
                continue
            message = SimpleNamespace(
                options=data.get("options") or {},
                message_id=data.get("message_id"),
                message_timestamp=data.get("message_timestamp") or 0,
            )
            ended += tr.fail(
                track,
                kwargs["asset_id"],
                kwargs,
                tr.generation_of(message),
                "purged",
                f"purged from queue {queue} by {who}",
            )
        AuditEntry.create(
            who=who, action="queue-purge", target=queue, count=len(purged), detail={"records_failed": ended}
        )
    return 200, {"queue": queue, "purged": len(purged), "records_failed": ended}
