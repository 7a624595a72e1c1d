"""Failed messages (dead letters: filter, detail, requeue or delete one or many) and the audit trail."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, flash, render_template, request

from worker_service.deadletters import ERROR_TYPES, Filter, to_public
from worker_service.web.views import MAX_ID, found, json_response, principal, see_other, services, text

blueprint = Blueprint("failed", __name__)
PAGE_SIZE = 50
FILTER_KEYS = ("actor", "queue", "error_type", "state", "since", "until", "asset_id")


def make_filter(values: Mapping[str, str]) -> Filter:
    """The dead letters a page or API call asks for; ``state`` is ``dead`` unless given ('' = any)."""

    def day(name: str, plus: int = 0) -> datetime | None:
        raw = values.get(name) or ""
        try:
            return datetime.fromisoformat(raw).replace(tzinfo=None) + timedelta(days=plus) if raw else None
        except (ValueError, OverflowError):  # OverflowError: 9999-12-31 plus a day
            return None

    state = values.get("state", "dead")
    return Filter(
        actor=values.get("actor") or None,
        queue=values.get("queue") or None,
        error_type=values.get("error_type") or None,
        state=state or None,
        since=day("since"),
        until=day("until", plus=1),
        asset_id=values.get("asset_id") or None,
    )


def filter_values(values: Mapping[str, str]) -> dict[str, str]:
    return {k: values[k] for k in FILTER_KEYS if k in values}


#: with a time range (which the tally cannot answer) the page counts up to this many matching dead letters, then
#: says "10,000+" (an exact count of millions would cost more than the page); without one its counts are exact
COUNT_CAP = 10_000
#: the largest row offset a page or API call may ask for: past it the database's integer overflows (a 500)
MAX_OFFSET = 2**31 - 1


def number(name: str, default: int, most: int | None = None, *, scale: int = 1) -> int:
    """The query parameter ``name`` as a non-negative integer (``default`` when absent), capped at ``most``;
    400 when it is not a number or would reach past MAX_OFFSET rows once multiplied by ``scale``."""
    value = request.args.get(name, "")
    if not value:
        return default
    if not value.isascii() or not value.isdigit() or int(value) * scale > MAX_OFFSET:
        abort(400, description=f"{name} must be a whole number of at most {MAX_OFFSET // scale}")
    n = int(value)
    return min(most, n) if most is not None else n


@blueprint.get("/dead-letters")
def list_page() -> str:
    store = services().store
    flt = make_filter(request.args)
    page = max(1, number("page", 1, scale=PAGE_SIZE))  # links of old; the page's own go by ``before``
    before = number("before", 0) or None
    rows = store.list(flt, limit=PAGE_SIZE + 1, offset=0 if before else (page - 1) * PAGE_SIZE, before=before)
    values = filter_values(request.args)
    total = store.count(flt, cap=COUNT_CAP)
    return render_template(
        "dead_letters.html",
        nav="dlq",
        flt=flt,
        rows=[to_public(r) for r in rows[:PAGE_SIZE]],
        more=len(rows) > PAGE_SIZE,
        first_page=not before and page == 1,
        older=rows[PAGE_SIZE - 1].id if len(rows) > PAGE_SIZE else None,
        total=_shown(total, flt),
        by_type={k: _shown(n, flt) for k, n in store.counts_by("error_type", flt, cap=COUNT_CAP).items()},
        actors=store.distinct("actor"),
        queues=store.distinct("queue"),
        error_types=ERROR_TYPES,
        codes=store.recent_codes(),
        since=request.args.get("since", ""),
        until=request.args.get("until", ""),
        qs=urlencode(values),
        query_items=sorted(values.items()),
    )


def _shown(count: int, flt: Filter) -> str:
    """A count as the page shows it: one counted past COUNT_CAP (a time range) as "10,000+"."""
    return f"{COUNT_CAP:,}+" if not flt.tallied and count > COUNT_CAP else f"{count:,}"


@blueprint.get("/dead-letters/<id:ident>")
def detail_page(ident: int) -> Response | str:
    row = services().store.get(ident)
    if row is None:
        return text("No such dead letter", 404)
    record = to_public(row, full=True)
    payload = {"args": record["args"], "kwargs": record["kwargs"], "options": record["options"]}
    for item in record.get("history") or []:
        item["at_iso"] = datetime.fromtimestamp(item.get("at", 0) / 1000, UTC).isoformat(timespec="seconds")
    return render_template(
        "dead_letter.html",
        nav="dlq",
        r=record,
        payload=json.dumps(payload, indent=2, ensure_ascii=False, default=str),
    )


@blueprint.post("/dead-letters/<id:ident>/<any(requeue, delete):action>")
def act_one(ident: int, action: str) -> Response | str:
    store, who = services().store, principal().audit_name
    if action == "requeue" and request.form.get("confirm") != "yes":
        row = store.get(ident)
        record = to_public(row) if row is not None else None
        if row is not None and record is not None and record["permanent"] and row.state == "dead":
            return render_template("confirm_requeue.html", nav="dlq", r=record)
    if action == "requeue":
        done = bool(store.requeue([ident], who))
        flash(f"Requeued dead letter {ident}." if done else f"Dead letter {ident} was not dead any more.")
    else:
        done = bool(store.delete([ident], who))
        flash(f"Deleted dead letter {ident}." if done else f"Dead letter {ident} was not dead any more.")
    return see_other(f"/dead-letters/{ident}")


@blueprint.post("/dead-letters/bulk")
def act_bulk() -> Response | str:
    store, who = services().store, principal().audit_name
    action = request.form.get("action", "")
    values = {
        k[2:]: v for k, v in request.form.items() if k.startswith("f_")
    }  # the list's filter, carried along
    back = "/dead-letters?" + urlencode(filter_values(values))
    if action in ("requeue", "delete"):
        ids = [
            int(i) for i in request.form.getlist("ids") if i.isascii() and i.isdigit() and int(i) <= MAX_ID
        ]
        if not ids:
            flash("Nothing selected.")
            return see_other(back)
        n = len(store.requeue(ids, who)) if action == "requeue" else store.delete(ids, who)
        flash(f"{action.capitalize()}d {n} of {len(ids)} selected.")
        return see_other(back)
    if action in ("requeue-all", "delete-all"):
        flt = make_filter({**values, "state": "dead"})
        verb = action.split("-")[0]
        if request.form.get("confirm") != "yes":
            return render_template(
                "confirm.html",
                nav="dlq",
                verb=verb,
                action=action,
                count=store.count(flt),
                query_items=sorted(filter_values(values).items()),
                qs=urlencode(filter_values(values)),
                description=json.dumps({k: v for k, v in values.items() if v}),
            )
        n = len(store.requeue_matching(flt, who)) if verb == "requeue" else store.delete_matching(flt, who)
        flash(f"{verb.capitalize()}d {n} matching dead letters.")
        return see_other(back)
    return text("Unknown action", 400)


def audit_rows() -> list[dict[str, Any]]:
    """The last 500 audit entries, newest first (the page and the API show the same)."""
    return services().store.audit(limit=500)


@blueprint.get("/audit")
def audit_page() -> str:
    return render_template("audit.html", nav="audit", rows=audit_rows())


@blueprint.get("/api/dead-letters")
def api_list() -> Response:
    store = services().store
    flt = make_filter(request.args)
    limit = number("limit", 100, most=1000)
    cursor = number("cursor", 0) or None
    found = store.list(flt, limit=limit + 1, offset=0 if cursor else number("offset", 0), before=cursor)
    rows = [to_public(r) for r in found[:limit]]
    # next_cursor: pass it as ``cursor`` for the next (older) page; null on the last one
    return json_response(
        {
            "total": store.count(flt),
            "items": rows,
            "next_cursor": found[limit - 1].id if len(found) > limit else None,
        }
    )


@blueprint.get("/api/dead-letters/<id:ident>")
def api_show(ident: int) -> Response:
    row = services().store.get(ident)
    return found(to_public(row, full=True) if row else None, "not found")


@blueprint.post("/api/dead-letters/<id:ident>/requeue")
def api_requeue(ident: int) -> Response:
    store = services().store
    done = store.requeue([ident], principal().audit_name)
    if done:
        return json_response({"requeued": done})
    exists = store.get(ident) is not None
    return json_response(
        {"error": "not dead (already requeued or deleted)" if exists else "not found"}, 409 if exists else 404
    )


@blueprint.get("/api/audit")
def api_audit() -> Response:
    return json_response(audit_rows())
