"""The live queues: every queue with its counts (failed ones from the dead letters, as the failed-messages page
counts them) and one queue's messages, waiting, delayed and fetched, masked, each linked to its asset."""

from __future__ import annotations

from flask import Blueprint, Response, render_template

from worker_service.deadletters import Filter
from worker_service.web import queue_contents
from worker_service.web.views import found, see_other, services

blueprint = Blueprint("queues", __name__)


def _failed_by_queue() -> dict[str, int]:
    return services().store.counts_by("queue", Filter(state="dead"))


@blueprint.get("/queues/")
def list_page() -> Response | str:
    from worker_service.brokers.redis import ReliableRedisBroker
    from worker_service.web.metrics import queue_stats

    broker = services().broker  # the queue counts only, not the whole overview (charts, workers, upstreams)
    queues = (
        queue_stats(broker.client, broker.namespace, broker.shards)
        if isinstance(broker, ReliableRedisBroker)
        else []
    )
    failed = _failed_by_queue()
    for queue in queues:
        queue["failed"] = failed.get(queue["name"], 0)
    return render_template("queues.html", nav="queues", queues=queues)


def _contents(queue: str) -> dict | None:
    broker = services().redis_broker(queue)
    if broker is None:
        return None
    data = queue_contents.contents(broker.client_for(queue), broker.namespace, queue)
    data["failed"] = _failed_by_queue().get(queue, 0)
    return data


@blueprint.get("/queues/<queue>")
def queue_page(queue: str) -> Response | str:
    data = _contents(queue)
    if data is None:
        return Response(render_template("queue_missing.html", nav="queues", queue=queue), 404)
    return render_template("queue.html", nav="queues", q=data)


@blueprint.get("/queues/queues/<queue>")
@blueprint.get("/queues/queues/<queue>/<path:_rest>")
def old_link(queue: str, _rest: str = "") -> Response:
    """dramatiq-dashboard's links of old (it was mounted here until the fourth round)."""
    return see_other(f"/queues/{queue}")


@blueprint.get("/api/queues/<queue>")
def api_queue(queue: str) -> Response:
    """``{"queue", "waiting": {"total", "messages"}, "delayed": {...}, "fetched": {...}, "failed"}``: the first 50 of
    each (masked), and how many in all."""
    return found(_contents(queue), "unknown queue (or not a Redis broker)")
