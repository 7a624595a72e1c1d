"""Outcome events: delivering the outbox to EVENTS_WEBHOOK_URL, signed, at least once, in order per asset.

Each event is one ``POST`` of the pinned JSON body (``OutboxEvent.body``) with
``X-Worker-Signature: sha256=<hex HMAC-SHA256 of the raw body with EVENTS_WEBHOOK_SECRET>`` and
``X-Worker-Event-Id``.  A 2xx answer delivers it; anything else (a 4xx or 5xx, a timeout, a refused
connection) schedules the event again with exponential backoff and jitter (1 s doubling up to
5 minutes, never given up), and holds back the later events of the same asset until it is through:
a receiver sees an asset's events in the order they happened.  An event is marked delivered only after
the receiver said so, so a dispatcher killed in between sends it again (same ``event_id``: receivers
deduplicate by it).

:class:`EventDispatcher` runs one round at a time; the fleet runs it in one process at a time
(middleware.events, a Redis lease), so the order holds across hosts.
"""

from __future__ import annotations

import json
import logging
import random
from datetime import timedelta

import peewee
import requests
from worker_contracts.events import SIGNATURE_HEADER, sign  # one signature, for sender and receiver

from worker_service.database import OutboxEvent, session, utcnow

logger = logging.getLogger(__name__)


def encode(body: dict[str, object]) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def backoff(attempts: int, base_s: float = 1.0, cap_s: float = 300.0) -> float:
    return min(cap_s, base_s * 2 ** min(attempts, 20)) * random.uniform(0.5, 1.0)


class EventDispatcher:
    """Parameters: url (EVENTS_WEBHOOK_URL), secret (EVENTS_WEBHOOK_SECRET), timeout_s, batch (events per
    round), session (requests)."""

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout_s: float = 5.0,
        batch: int = 500,
        http: requests.Session | None = None,
    ) -> None:
        self.url = url
        self.secret = secret
        self.timeout_s = timeout_s
        self.batch = batch
        self.http = http or requests.Session()

    def deliver(self, event: OutboxEvent) -> str | None:
        """POST one event; None when the receiver took it, else why not."""
        body = encode(event.body())
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(body, self.secret),
            "X-Worker-Event-Id": event.event_id,
            "User-Agent": "worker-service-events/1",
        }
        try:
            response = self.http.post(
                self.url, data=body, headers=headers, timeout=(self.timeout_s, self.timeout_s)
            )
        except requests.RequestException as exc:
            return f"{type(exc).__name__}: {exc}"[:2000]
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}: {response.text[:500]}"

    def run_once(self, max_seconds: float = 10.0) -> dict[str, int]:
        """One round over the pending events, oldest first; returns how many were delivered and failed.

        The round ends after ``max_seconds`` (well inside the lease that makes it the only one), and at the
        first receiver that cannot be reached (the others would time out too).
        """
        import time

        from worker_service.observability.metrics import EVENTS

        ends = time.monotonic() + max_seconds
        now = utcnow()
        with session():
            pending = list(
                OutboxEvent.select()
                .where(OutboxEvent.state == "pending")
                .order_by(OutboxEvent.id)
                .limit(self.batch)
            )
        held: set[str] = set()  # assets whose earlier event is not through: their later events wait
        counts = {"delivered": 0, "failed": 0}
        for event in pending:
            if time.monotonic() > ends:
                break
            if event.asset_id in held:
                continue
            if event.next_attempt_at is not None and event.next_attempt_at > now:
                held.add(event.asset_id)
                continue
            error = self.deliver(event)
            with session(transaction=True):
                if error is None:
                    (
                        OutboxEvent.update(
                            state="delivered",
                            delivered_at=utcnow(),
                            attempts=OutboxEvent.attempts + 1,
                            last_error=None,
                        )
                        .where(OutboxEvent.id == event.id, OutboxEvent.state == "pending")
                        .execute()
                    )
                else:
                    delay = timedelta(seconds=backoff(event.attempts))
                    (
                        OutboxEvent.update(
                            attempts=OutboxEvent.attempts + 1,
                            next_attempt_at=utcnow() + delay,
                            last_error=error,
                        )
                        .where(OutboxEvent.id == event.id)
                        .execute()
                    )
            if error is None:
                counts["delivered"] += 1
                EVENTS.labels("delivered").inc()
            else:
                counts["failed"] += 1
                EVENTS.labels("failed").inc()
                held.add(event.asset_id)
                logger.warning(
                    "Event %s (%s of %s) not delivered, attempt %d: %s",
                    event.event_id,
                    event.event,
                    event.asset_id,
                    event.attempts + 1,
                    error,
                )
                if not error.startswith("HTTP "):  # unreachable: the next ones would wait for a timeout too
                    break
        return counts


def resend(event_ids: list[int], who: str) -> int:
    """Send events again (delivered ones too), at once, in their order; audited.  Returns how many."""
    from worker_service.database import AuditEntry

    with session(transaction=True):
        count = int(
            OutboxEvent.update(state="pending", next_attempt_at=None)
            .where(OutboxEvent.id.in_(event_ids))
            .execute()
        )
        AuditEntry.create(
            who=who, action="event-resend", target=",".join(map(str, event_ids))[:2000], count=count
        )
    return count


def recent(state: str | None = None, limit: int = 200) -> list[dict[str, object]]:
    """The latest events (newest first), for the dashboard and its API."""
    from worker_service.database.models import iso

    with session():
        query = OutboxEvent.select().order_by(OutboxEvent.id.desc()).limit(limit)
        if state:
            query = query.where(OutboxEvent.state == state)
        return [
            {
                **event.body(),
                "id": event.id,
                "state": event.state,
                "attempts": event.attempts,
                "next_attempt_at": iso(event.next_attempt_at),
                "delivered_at": iso(event.delivered_at),
                "last_error": event.last_error,
            }
            for event in query
        ]


def lag() -> tuple[int, float]:
    """(pending events, age in seconds of the oldest pending one)."""
    with session():
        count, oldest = (
            OutboxEvent.select(peewee.fn.COUNT(OutboxEvent.id), peewee.fn.MIN(OutboxEvent.occurred_at))
            .where(OutboxEvent.state == "pending")
            .tuples()
            .get()
        )
    if isinstance(oldest, str):  # SQLite aggregates come back as text
        from datetime import datetime

        oldest = datetime.fromisoformat(oldest)
    return int(count or 0), max(0.0, (utcnow() - oldest).total_seconds()) if oldest else 0.0
