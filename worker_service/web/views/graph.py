"""The workspace knowledge graph: entities (list, search, one), the whole graph in JSON/GraphML/Cypher, and the
operators' merge and split (audited). Viewers may read; changes need an operator (web.app's ``authorize``)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, flash, render_template, request

from worker_service.knowledge import graphread
from worker_service.knowledge.curation import CurationError, merge, split
from worker_service.knowledge.export import FORMATS, render
from worker_service.web.views import MAX_ID, found, json_response, principal, see_other, text

blueprint = Blueprint("graph", __name__)


def _workspace() -> str:
    return request.args.get("workspace", "").strip() or "default"


def _number(name: str, default: int, most: int) -> int | None:
    raw = request.args.get(name, "")
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or int(raw) > most:
        return None
    return int(raw)


@blueprint.get("/api/entities")
def api_entities() -> Response:
    limit, cursor = _number("limit", 50, graphread.MAX_LIMIT), _number("cursor", 0, MAX_ID)
    if limit is None or cursor is None:
        return json_response({"error": f"limit is 1-{graphread.MAX_LIMIT}, cursor an entity id"}, 400)
    return json_response(
        graphread.list_entities(
            _workspace(),
            q=request.args.get("q", "")[:200],
            type_=request.args.get("type", "")[:100],
            limit=limit or 1,
            cursor=cursor,
        )
    )


@blueprint.get("/api/entities/<id:ident>")
def api_entity(ident: int) -> Response:
    return found(graphread.entity(ident), "unknown entity")


@blueprint.get("/api/graph")
def api_graph() -> Response:
    fmt = request.args.get("format", "json")
    if fmt not in FORMATS:
        return json_response({"error": f"format is one of {', '.join(FORMATS)}"}, 400)
    body, media_type = render(graphread.workspace_graph(_workspace()), fmt)
    return Response(body, mimetype=media_type.split(";")[0], content_type=media_type)


def _body() -> dict[str, Any]:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else {}


@blueprint.post("/api/entities/merge")
def api_merge() -> Response:
    ids = _body().get("ids")
    if not isinstance(ids, list) or not all(isinstance(i, int) and 0 < i <= MAX_ID for i in ids):
        return json_response({"error": 'send {"ids": [entity id, ...]}'}, 400)
    try:
        merged = merge(ids, principal().audit_name)
    except CurationError as exc:
        return json_response({"error": str(exc)}, 400)
    return json_response(graphread.entity(merged))


@blueprint.post("/api/entities/<id:ident>/split")
def api_split(ident: int) -> Response:
    aliases = _body().get("aliases")
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        return json_response({"error": 'send {"aliases": [surface form, ...]}'}, 400)
    try:
        entities = split(ident, aliases, principal().audit_name)
    except CurationError as exc:
        return json_response({"error": str(exc)}, 400)
    return json_response({"entities": [graphread.entity(e) for e in entities]})


@blueprint.get("/entities")
def page_entities() -> Response | str:
    workspace, q, type_ = _workspace(), request.args.get("q", "")[:200], request.args.get("type", "")[:100]
    cursor = _number("cursor", 0, MAX_ID)
    found_ = graphread.list_entities(workspace, q=q, type_=type_, limit=50, cursor=cursor or 0)
    more = urlencode({"workspace": workspace, "q": q, "type": type_, "cursor": found_["next_cursor"] or ""})
    return render_template(
        "entities.html",
        nav="entities",
        workspace=workspace,
        q=q,
        type_=type_,
        entities=found_["entities"],
        next_cursor=found_["next_cursor"],
        more=more,
    )


@blueprint.get("/entities/<id:ident>")
def page_entity(ident: int) -> Response | str:
    one = graphread.entity(ident)
    if one is None:
        return text(f"No entity {ident}.", 404)
    others = {r["source"] for r in one["relations"]} | {r["target"] for r in one["relations"]}
    return render_template("entity.html", nav="entities", e=one, names=graphread.names_of(others))


@blueprint.post("/entities/<id:ident>/merge")
def page_merge(ident: int) -> Response:
    other = request.form.get("other", "").strip().lstrip("#")
    if not other.isascii() or not other.isdigit() or not 0 < int(other) <= MAX_ID:
        flash("Name the other entity by its number.")
        return see_other(f"/entities/{ident}")
    try:
        merged = merge([ident, int(other)], principal().audit_name)
    except CurationError as exc:
        flash(f"Not merged: {exc}.")
        return see_other(f"/entities/{ident}")
    flash(f"Merged entities {ident} and {other}.")
    return see_other(f"/entities/{merged}")


@blueprint.post("/entities/<id:ident>/split")
def page_split(ident: int) -> Response:
    try:
        entities = split(ident, request.form.getlist("aliases"), principal().audit_name)
    except CurationError as exc:
        flash(f"Not split: {exc}.")
        return see_other(f"/entities/{ident}")
    flash(f"Split into entities {', '.join(map(str, entities))}.")
    return see_other(f"/entities/{entities[0]}")
