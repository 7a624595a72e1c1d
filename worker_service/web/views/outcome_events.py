"""The outcome-event outbox (events.py): what waits, what was delivered, send one again."""

from __future__ import annotations

from flask import Blueprint, Response, flash, render_template, request

from worker_service.outcome_events import lag, recent, resend
from worker_service.web.views import json_response, principal, see_other

blueprint = Blueprint("events", __name__)


def state_asked() -> str | None:
    state = request.args.get("state")
    return state if state in ("pending", "delivered") else None


@blueprint.get("/events")
def page() -> str:
    from settings import get_settings

    pending, age = lag()
    return render_template(
        "events.html",
        nav="events",
        rows=recent(state_asked()),
        pending=pending,
        lag=round(age),
        configured=bool(get_settings().events_webhook_url),
    )


@blueprint.post("/events/<id:event_id>/resend")
def resend_page(event_id: int) -> Response:
    n = resend([event_id], principal().audit_name)
    flash(f"Event {event_id} will be sent again." if n else f"No event {event_id}.")
    return see_other("/events")


@blueprint.get("/api/events")
def api_list() -> Response:
    pending, age = lag()
    return json_response(
        {"pending": pending, "oldest_pending_seconds": round(age, 1), "items": recent(state_asked())}
    )


@blueprint.post("/api/events/<id:event_id>/resend")
def api_resend(event_id: int) -> Response:
    n = resend([event_id], principal().audit_name)
    return json_response({"resent": n}) if n else json_response({"error": "not found"}, 404)
