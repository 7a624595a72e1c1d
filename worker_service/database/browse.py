"""Browsing asset records for operators (``GET /api/assets``, the assets page): filters, keyset pages, counts.

Newest first by ``created_at`` (then ``asset_id``), one index range a page (migration 14's indexes
``(created_at, asset_id)`` and the same behind ``status`` and ``knowledge_status``), so a page deep in
10^6 records costs what the first one does.  The cursor is opaque to callers: the last row's key.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import peewee

from worker_service.database.connection import session
from worker_service.database.models import Asset

#: the states a list can be filtered by (the asset's own, and its knowledge's)
STATUSES = ("received", "processing", "retrying", "extracted", "failed")
KNOWLEDGE_STATUSES = ("pending", "processing", "retrying", "done", "skipped", "failed")


#: counts per state stop past this many (the page shows "10,000+"; the API says which with ``counts_capped``)
COUNT_CAP = 10_000


class BadQuery(ValueError):
    """A filter or cursor the caller got wrong (the API answers 400 with its text)."""


@dataclass(frozen=True)
class AssetQuery:
    """Which asset records: each given field narrows the list.

    Parameters:
      status: the asset's status (STATUSES).
      knowledge_status: its knowledge's status (KNOWLEDGE_STATUSES).
      type: the detected type (``pdf``, ``docx``, ...).
      q: an asset id prefix, or part of the file name (case-insensitive).
      since: created at or after (UTC, naive).
    """

    status: str | None = None
    knowledge_status: str | None = None
    type: str | None = None
    q: str | None = None
    since: datetime | None = None

    @classmethod
    def parse(cls, values: dict[str, str]) -> AssetQuery:
        """From query parameters; BadQuery for a state or date that cannot be."""
        status, knowledge = values.get("status") or None, values.get("knowledge_status") or None
        if status and status not in STATUSES:
            raise BadQuery(f"status must be one of {', '.join(STATUSES)}")
        if knowledge and knowledge not in KNOWLEDGE_STATUSES:
            raise BadQuery(f"knowledge_status must be one of {', '.join(KNOWLEDGE_STATUSES)}")
        since = None
        if values.get("since"):
            try:
                since = datetime.fromisoformat(values["since"].replace("Z", "+00:00")).replace(tzinfo=None)
            except ValueError:
                raise BadQuery("since must be an ISO-8601 date or time (UTC)") from None
        q = (values.get("q") or "").strip()[:200] or None
        return cls(
            status=status, knowledge_status=knowledge, type=values.get("type") or None, q=q, since=since
        )

    def where(self) -> peewee.Expression:
        expr: peewee.Expression = Asset.asset_id.is_null(False)
        if self.status:
            expr &= Asset.status == self.status
        if self.knowledge_status:
            expr &= Asset.knowledge_status == self.knowledge_status
        if self.type:
            expr &= Asset.detected_type == self.type
        if self.q:
            expr &= Asset.asset_id.startswith(self.q) | Asset.filename.contains(self.q)
        if self.since:
            expr &= Asset.created_at >= self.since
        return expr


def encode_cursor(row: Asset) -> str:
    key = json.dumps([row.created_at.isoformat(), row.asset_id], ensure_ascii=False)
    return base64.urlsafe_b64encode(key.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        created, asset_id = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        return datetime.fromisoformat(created), str(asset_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise BadQuery("cursor is not one this API gave") from None


def page(
    query: AssetQuery, *, limit: int, cursor: str | None = None
) -> tuple[list[dict[str, Any]], str | None]:
    """One page of records (as ``Asset.to_public``), newest first, and the cursor of the next (None at the end)."""
    where = query.where()
    if cursor:
        created, asset_id = decode_cursor(cursor)
        where &= peewee.Tuple(Asset.created_at, Asset.asset_id) < peewee.Tuple(created, asset_id)
    with session():
        rows = list(
            Asset.select()
            .where(where)
            .order_by(Asset.created_at.desc(), Asset.asset_id.desc())
            .limit(limit + 1)
        )
    more = len(rows) > limit
    return [row.to_public() for row in rows[:limit]], encode_cursor(rows[limit - 1]) if more else None


def counts(query: AssetQuery, *, cap: int = COUNT_CAP) -> dict[str, dict[str, int]]:
    """How many records per status and per knowledge status match the query's other filters (a tab's count does
    not depend on which tab is open), each counted up to ``cap + 1`` ("more than cap"): one statement of capped
    index ranges, so the answer costs the same at 10^6 records as at 10^3 (an exact GROUP BY over 10^6 took
    250 ms; `make bench`, dashboard)."""
    parts: list[peewee.SelectQuery] = []
    for name, column, states in (
        ("status", Asset.status, STATUSES),
        ("knowledge_status", Asset.knowledge_status, KNOWLEDGE_STATUSES),
    ):
        others = replace(query, **{name: None}).where()
        for state in states:
            capped = Asset.select(Asset.asset_id).where(others & (column == state)).limit(cap + 1)
            parts.append(
                Asset.select(peewee.Value(f"{name} {state}"), peewee.fn.COUNT(peewee.SQL("*"))).from_(
                    capped.alias("c")
                )
            )
    union = parts[0]
    for part in parts[1:]:
        union = union.union_all(part)
    out: dict[str, dict[str, int]] = {"status": {}, "knowledge_status": {}}
    with session():
        for label, n in union.tuples():
            name, state = label.split(" ")
            out[name][state] = int(n)
    return out
