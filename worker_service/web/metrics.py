"""Broker-level gauges, computed on each scrape from one place (the dashboard), so nothing is counted twice.

worker_queue_depth{queue}              messages waiting
worker_queue_delayed{queue}            messages in the delay queue (retries, deferrals)
worker_queue_inflight{queue}           messages fetched by a worker and not yet settled
worker_queue_oldest_age_seconds{queue} age of the oldest waiting message (since it was first sent)
worker_queue_paused{queue}             1 while an operator has paused the queue
worker_dead_letters{actor}             dead letters in state ``dead``
worker_upstream_paused{upstream}       1 while an upstream is paused fleet-wide (429, 402, 403 block, daily budget)
worker_upstream_auth_failed{upstream}  1 while an upstream is paused because it rejected our credentials (401)
worker_events_pending                  outcome events not delivered yet
worker_events_oldest_pending_seconds   age of the oldest of them (delivery lag)
worker_llm_spend_today_usd{upstream}   the fleet's spend on the LLM upstream since 00:00 UTC
worker_llm_daily_budget_usd{upstream}  OPENROUTER_DAILY_BUDGET_USD, when set
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from typing import Any

import peewee
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from worker_contracts import CONTRACTS

from worker_service.database import DeadLetterTally, session

UPSTREAMS = ("openrouter", "kommo")


def queue_names(client: Any, ns: str) -> list[str]:
    """The contracts' queues and every queue a worker registered (delay queues aside)."""
    names = {q for q, _ in CONTRACTS.values()}
    names |= {q.decode() for q in client.smembers(f"{ns}:__queues__")}
    return sorted(n for n in names if not n.endswith(".DQ"))


def queue_stats(client: Any, ns: str, shards: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
    """Per queue: waiting, delayed, fetched and not settled, paused by an operator, age of the oldest waiting;
    read from the queue's Redis (``shards``: BROKER_SHARDS' clients by queue, else ``client``)."""
    queues = queue_names(client, ns)
    paused = {q.decode() for q in client.smembers(f"{ns}:__paused_queues__")}
    owners = {q: (shards or {}).get(q, client) for q in queues}
    counts: dict[str, list[Any]] = {}
    by_client: dict[int, tuple[Any, list[str]]] = {}
    for q, owner in owners.items():
        by_client.setdefault(id(owner), (owner, []))[1].append(q)
    for owner, names in by_client.values():
        pipe = owner.pipeline(transaction=False)
        for q in names:
            pipe.llen(f"{ns}:{q}")
            pipe.hlen(f"{ns}:{q}.msgs")
            pipe.hlen(f"{ns}:{q}.DQ.msgs")
            pipe.lindex(f"{ns}:{q}", 0)
        results = pipe.execute()
        counts.update({q: results[4 * i : 4 * i + 4] for i, q in enumerate(names)})
    now = time.time()
    rows = []
    for q in queues:
        waiting, stored, in_delay, head = counts[q]
        age = 0.0
        if head is not None:
            body = owners[q].hget(f"{ns}:{q}.msgs", head)
            try:
                age = max(0.0, now - json.loads(body)["message_timestamp"] / 1000) if body else 0.0
            except (ValueError, KeyError, TypeError):
                age = 0.0
        rows.append(
            {
                "name": q,
                "depth": waiting,
                "delayed": in_delay,
                "in_flight": max(0, stored - waiting),
                "paused": q in paused,
                "oldest_age_seconds": round(age, 1),
            }
        )
    return rows


class BrokerCollector(Collector):
    """Parameters: redis client of the broker (None on RabbitMQ: queue gauges then come from RabbitMQ's own
    exporter), namespace, BROKER_SHARDS' clients by queue."""

    def __init__(
        self,
        client: Any | None,
        namespace: str = "dramatiq",
        *,
        spend_client: Any | None = None,
        daily_budget_usd: float | None = None,
        shards: Mapping[str, Any] | None = None,
    ) -> None:
        self.client = client
        self.shards = dict(shards or {})
        self.ns = namespace
        self.spend_client = spend_client
        self.daily_budget_usd = daily_budget_usd

    def _spend(self) -> Iterable[GaugeMetricFamily]:
        from datetime import UTC, datetime

        from worker_service.knowledge.budgets import spend_key

        spend = GaugeMetricFamily(
            "worker_llm_spend_today_usd", "Fleet-wide LLM spend since 00:00 UTC", labels=["upstream"]
        )
        budget = GaugeMetricFamily(
            "worker_llm_daily_budget_usd", "Daily LLM budget of the fleet (when set)", labels=["upstream"]
        )
        if self.spend_client is not None:
            try:
                value = self.spend_client.get(spend_key(self.ns, "openrouter", datetime.now(UTC)))
                spend.add_metric(["openrouter"], float(value) if value else 0.0)
            except Exception:  # noqa: BLE001 - a scrape must not fail because Redis is down
                pass
        if self.daily_budget_usd is not None:
            budget.add_metric(["openrouter"], self.daily_budget_usd)
        yield from (spend, budget)

    def collect(self) -> Iterable[GaugeMetricFamily]:
        depth = GaugeMetricFamily("worker_queue_depth", "Messages waiting in the queue", labels=["queue"])
        delayed = GaugeMetricFamily("worker_queue_delayed", "Messages in the delay queue", labels=["queue"])
        inflight = GaugeMetricFamily(
            "worker_queue_inflight", "Messages fetched and not yet settled", labels=["queue"]
        )
        oldest = GaugeMetricFamily(
            "worker_queue_oldest_age_seconds", "Age of the oldest waiting message", labels=["queue"]
        )
        paused = GaugeMetricFamily(
            "worker_upstream_paused", "1 while the upstream is paused fleet-wide", labels=["upstream"]
        )
        queue_paused = GaugeMetricFamily(
            "worker_queue_paused", "1 while an operator has paused the queue", labels=["queue"]
        )
        if self.client is not None:
            for row in queue_stats(self.client, self.ns, self.shards):
                queue_paused.add_metric([row["name"]], int(row["paused"]))
                depth.add_metric([row["name"]], row["depth"])
                delayed.add_metric([row["name"]], row["delayed"])
                inflight.add_metric([row["name"]], row["in_flight"])
                oldest.add_metric([row["name"]], row["oldest_age_seconds"])
        auth = GaugeMetricFamily(
            "worker_upstream_auth_failed",
            "1 while the upstream is paused because it rejected the credentials",
            labels=["upstream"],
        )
        pauses = self.spend_client if self.spend_client is not None else self.client
        if pauses is not None:
            from worker_service.ratelimit import RateLimiter

            limiter = RateLimiter(pauses, {}, namespace=self.ns)  # a reader: it takes no slot
            try:
                for upstream in UPSTREAMS:
                    reason = limiter.pause_reason(upstream)
                    paused.add_metric([upstream], 0 if reason is None else 1)
                    auth.add_metric([upstream], 1 if reason is not None and reason.startswith("401") else 0)
            except Exception:  # noqa: BLE001 - a scrape must not fail because Redis is down
                pass
        yield from (depth, delayed, inflight, oldest, queue_paused, paused, auth)
        yield from self._spend()
        dead = GaugeMetricFamily(
            "worker_dead_letters", "Dead letters waiting for an operator", labels=["actor"]
        )
        try:
            with session():
                rows = (
                    DeadLetterTally.select(DeadLetterTally.actor, peewee.fn.SUM(DeadLetterTally.n))
                    .where(DeadLetterTally.state == "dead")
                    .group_by(DeadLetterTally.actor)
                    .tuples()
                )
                for actor, count in rows:
                    if count:
                        dead.add_metric([actor or "(undecodable)"], count)
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database is down
            pass
        yield dead
        pending = GaugeMetricFamily("worker_events_pending", "Outcome events not delivered yet")
        lagging = GaugeMetricFamily(
            "worker_events_oldest_pending_seconds", "Age of the oldest undelivered event"
        )
        try:
            from worker_service.outcome_events import lag

            count, age = lag()
            pending.add_metric([], count)
            lagging.add_metric([], age)
        except Exception:  # noqa: BLE001 - a scrape must not fail because the database is down
            pass
        yield from (pending, lagging)
