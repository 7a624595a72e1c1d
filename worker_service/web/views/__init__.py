"""The dashboard's pages and API, one blueprint a subject, and what they share.

fleet: the overview (home), queue pause/resume/purge.  failed: dead letters and the audit trail.
assets: one asset's record, history, text and graph.  events: the outcome-event outbox.
Every view runs after web.app's ``authorize``: ``principal()`` is who asks, and a state change
reaching a view has passed the CSRF and role checks.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Response, current_app, g
from werkzeug.routing import IntegerConverter

from worker_service.web.auth import Principal
from worker_service.web.services import Services

#: the largest row id the database holds (BIGINT); a larger one in a URL or a form is no row, never a 500
MAX_ID = 2**63 - 1


class IdConverter(IntegerConverter):
    """``<id:name>`` in a route: a row id, 1 to MAX_ID; anything else does not match (404)."""

    def __init__(self, map: Any) -> None:  # noqa: A002 - werkzeug's parameter name
        super().__init__(map, min=1, max=MAX_ID)


def services() -> Services:
    return current_app.extensions["worker"]


def principal() -> Principal:
    return g.principal


def json_response(data: Any, status: int = 200) -> Response:
    """JSON as the API has always written it: UTF-8, keys in their order, anything else as str()."""
    return Response(json.dumps(data, ensure_ascii=False, default=str), status, mimetype="application/json")


def found(data: Any, missing: str) -> Response:
    """``data`` as JSON, or 404 with ``{"error": missing}`` when it is None."""
    return json_response(data) if data is not None else json_response({"error": missing}, 404)


def text(body: str, status: int = 200) -> Response:
    return Response(body, status, mimetype="text/plain")


def see_other(location: str) -> Response:
    """303: after a POST the browser GETs ``location`` (a reload does not repeat the action)."""
    return Response("", 303, {"Location": location})
