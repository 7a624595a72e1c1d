"""Assets: the list by state (page and ``GET /api/assets``), and one asset's whole story: record with the reasons
for its state, status history, dead letters, text (preview and download), graph, CRM."""

from __future__ import annotations

from urllib.parse import quote

from flask import Blueprint, Response, abort, render_template, request

from worker_service.database import browse
from worker_service.database.queries import (
    asset_dead_letters,
    asset_history,
    asset_record,
    asset_text,
    asset_usage,
    lead_link,
)
from worker_service.knowledge import graphread
from worker_service.web.views import found, json_response, see_other, text

blueprint = Blueprint("assets", __name__)
PAGE_SIZE = 50
FILTER_KEYS = ("status", "knowledge_status", "type", "q", "since")


def _query() -> browse.AssetQuery:
    try:
        return browse.AssetQuery.parse(request.args)
    except browse.BadQuery as exc:
        abort(400, description=str(exc))


def _limit(default: int, most: int = 500) -> int:
    raw = request.args.get("limit", "")
    if not raw:
        return default
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= most:
        abort(400, description=f"limit must be a whole number from 1 to {most}")
    return int(raw)


def _page(query: browse.AssetQuery, limit: int) -> tuple[list[dict], str | None]:
    try:
        return browse.page(query, limit=limit, cursor=request.args.get("cursor") or None)
    except browse.BadQuery as exc:
        abort(400, description=str(exc))


@blueprint.get("/assets")
def list_page() -> Response | str:
    """The assets newest first, by state (tabs with counts), type, time or a search; ``?id=`` jumps to one."""
    asset_id = request.args.get("id", "").strip()
    if asset_id:
        return see_other(f"/assets/{quote(asset_id, safe='')}")
    query = _query()
    rows, next_cursor = _page(query, PAGE_SIZE)
    values = {k: request.args[k] for k in FILTER_KEYS if request.args.get(k)}
    return render_template(
        "assets.html",
        nav="assets",
        rows=rows,
        next_cursor=next_cursor,
        query=query,
        counts={
            name: {
                state: f"{browse.COUNT_CAP:,}+" if n > browse.COUNT_CAP else f"{n:,}"
                for state, n in group.items()
            }
            for name, group in browse.counts(query).items()
        },
        values=values,
        statuses=browse.STATUSES,
        knowledge_statuses=browse.KNOWLEDGE_STATUSES,
        first_page=not request.args.get("cursor"),
    )


@blueprint.get("/api/assets")
def api_list() -> Response:
    """``{"assets": [ASSET, ...], "next_cursor", "counts": {status: n}, "knowledge_counts": {status: n},
    "counts_capped": {"status": [...], "knowledge_status": [...]}}``: a state named in ``counts_capped`` has more
    than browse.COUNT_CAP (its n is the cap + 1); the others are exact."""
    query = _query()
    rows, next_cursor = _page(query, _limit(100))
    counts = browse.counts(query)
    capped = {
        name: [state for state, n in group.items() if n > browse.COUNT_CAP] for name, group in counts.items()
    }
    return json_response(
        {
            "assets": rows,
            "next_cursor": next_cursor,
            "counts": counts["status"],
            "knowledge_counts": counts["knowledge_status"],
            "counts_capped": capped,
        }
    )


@blueprint.get("/assets/<asset_id>")
def page(asset_id: str) -> Response | str:
    from worker_service.web.charts import graph_picture

    record = asset_record(asset_id)
    if record is None:
        return Response(render_template("asset_missing.html", nav="assets", asset_id=asset_id), 404)
    graph = asset_graph(asset_id)
    picture = (
        graph_picture(
            [e["name"] for e in graph["entities"]], [(r["source"], r["target"]) for r in graph["relations"]]
        )
        if graph
        else ""
    )
    return render_template(
        "asset.html",
        nav="assets",
        a=record,
        history=asset_history(asset_id) or [],
        dead=asset_dead_letters(asset_id),
        text=asset_text(asset_id),
        graph=graph,
        picture=picture,
        lead=lead_link(record.get("crm_lead_id")),
    )


@blueprint.get("/assets/<asset_id>/text")
def download_text(asset_id: str) -> Response:
    record = asset_text(asset_id)
    if record is None:
        return text("No text.", 404)
    response = Response(record["text"], mimetype="text/plain")
    response.headers["Content-Disposition"] = f'attachment; filename="{quote(asset_id, safe="")}.txt"'
    return response


@blueprint.get("/api/assets/<asset_id>")
def api_record(asset_id: str) -> Response:
    return found(asset_record(asset_id), "unknown asset")


@blueprint.get("/api/assets/<asset_id>/text")
def api_text(asset_id: str) -> Response:
    return found(asset_text(asset_id), "no text")


def asset_graph(asset_id: str) -> dict | None:
    """The asset's part of its workspace graph (each entity and relation with its graph ids) and its LLM usage."""
    graph = graphread.asset_graph(asset_id)
    return None if graph is None else {**graph, "usage": asset_usage(asset_id)}


@blueprint.get("/api/assets/<asset_id>/graph")
def api_graph(asset_id: str) -> Response:
    return found(asset_graph(asset_id), "unknown asset")


@blueprint.delete("/api/assets/<asset_id>")
def api_delete(asset_id: str) -> Response:
    """Delete the asset for good (an operator; audited; CSRF for sessions): worker_service.assets.deletion."""
    from settings import get_settings
    from worker_service.assets.deletion import delete_asset
    from worker_service.web.views import json_response, principal

    if not delete_asset(asset_id, principal().audit_name, get_settings()):
        return json_response({"error": "unknown asset"}, 404)
    return json_response({"deleted": asset_id})


def _retry_now(asset_id: str) -> str | None:
    from worker_service.assets.retrynow import retry_now
    from worker_service.web.views import principal, services

    return retry_now(asset_id, services().broker, principal().audit_name)


@blueprint.post("/assets/<asset_id>/retry")
def retry_page(asset_id: str) -> Response:
    """Operators: the retrying work of the asset is sent again now (a new generation; audited)."""
    from flask import flash

    track = _retry_now(asset_id)
    flash(
        f"Sent the asset's {'extraction' if track == 'asset' else 'knowledge'} again now."
        if track
        else "Nothing of this asset is waiting for a retry."
    )
    return see_other(f"/assets/{quote(asset_id, safe='')}")


@blueprint.post("/api/assets/<asset_id>/retry")
def api_retry(asset_id: str) -> Response:
    """``{"retried": "asset"|"knowledge"}``, or 409 when nothing of the asset is retrying."""
    track = _retry_now(asset_id)
    return (
        json_response({"retried": track})
        if track
        else json_response({"error": "nothing of this asset is waiting for a retry"}, 409)
    )


@blueprint.get("/api/assets/<asset_id>/history")
def api_history(asset_id: str) -> Response:
    return found(asset_history(asset_id), "unknown asset")
