"""Building an asset's knowledge graph through OpenRouter (the work of ``extract_knowledge``).

The Markdown text is chunked (KNOWLEDGE_CHUNK_CHARS/OVERLAP) at line ends, so a table row stays whole,
and each chunk knows its pages (the entities and relations it yields record them).  Each chunk's result is
stored as soon as it arrives, keyed by the chunk's text, the model and the
prompt version (``llm_chunk``): an interrupted delivery resumes where it
stopped, and the same text anywhere (another asset, a re-upload, a requeued
dead letter) is never paid for twice.  Budgets are checked before each call
(KNOWLEDGE_MAX_CHUNKS, KNOWLEDGE_MAX_COST_USD per asset: ``budget_exceeded``;
OPENROUTER_DAILY_BUDGET_USD for the fleet: a pause until midnight UTC, see
budgets.py).  A delivery that has worked half its time limit yields
(``Continue``): the rest runs behind the documents queued meanwhile, so a
200-chunk document cannot starve small ones.  A chunk whose output is
still invalid after one repair is left out and counted
(``knowledge_chunks_failed``); if every chunk is, the asset fails
``invalid_llm_output``.  The chunks' results become mentions with their pages
and identifiers (knowledge.mentions), which replace the asset's previous
contribution to its workspace graph and are resolved there in one
transaction (knowledge.graphstore).
No OPENROUTER_API_KEY: the status is ``skipped`` and no graph is invented.
Two deliveries of one asset's knowledge never pay at once (a lost acknowledgement
redelivers a message that is still running; a new message arrives while the old
one runs): the paid part holds a fleet-wide per-asset lease, renewed after each
chunk; a delivery that finds it taken waits and comes back without spending an
attempt, to find the chunks already paid in the cache.
When the asset has a ``crm_lead_id``, a ``crm_add_note`` with a summary
follows, idempotency key ``knowledge:{asset_id}:{sha256}``.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dramatiq
import redis
from dramatiq.message import Message
from worker_contracts import build_message

from settings import Settings
from worker_service.database.tracks import Generation
from worker_service.errors import Continue, PermanentError, SkipWork, TransientError
from worker_service.knowledge.budgets import AssetBudget, DailyBudget
from worker_service.knowledge.graph import SCHEMA, chunk_key, chunk_spans, extract_chunk
from worker_service.knowledge.mentions import NewMention, mentions_of
from worker_service.knowledge.openrouter import UPSTREAM, OpenRouterClient, Usage
from worker_service.knowledge.store import (
    extracted_asset,
    load_asset,
    spent_usd,
    store_chunk,
    store_contribution,
    stored_chunks,
)
from worker_service.ratelimit import limiter_of

logger = logging.getLogger(__name__)


def _client(settings: Settings) -> OpenRouterClient:
    return OpenRouterClient(
        base_url=settings.openrouter_base_url,
        api_key=settings.openrouter_api_key or "",
        model=settings.openrouter_model,
        limiter=limiter_of(dramatiq.get_broker()),
        timeout_s=settings.openrouter_timeout_seconds,
        app_url=settings.app_url,
        app_title=settings.app_title,
        payment_pause_ms=settings.openrouter_payment_pause_seconds * 1000,
    )


def _daily_budget(settings: Settings) -> DailyBudget:
    limiter = limiter_of(dramatiq.get_broker())
    return DailyBudget(
        limiter.client, limiter, UPSTREAM, settings.openrouter_daily_budget_usd, namespace=limiter.namespace
    )


class PaidCalls:
    """``chat`` for one chunk at a time: checks the budgets before each call and counts what each cost."""

    def __init__(self, client: OpenRouterClient, budget: AssetBudget, daily: DailyBudget) -> None:
        self.client = client
        self.budget = budget
        self.daily = daily
        self.usage = Usage()

    def chat(self, messages: list[dict[str, str]]) -> str:
        self.budget.check_call()
        self.daily.check()
        before = self.usage.cost_usd
        try:
            return self.client.chat(messages, schema=SCHEMA, usage=self.usage)
        finally:
            cost = self.usage.cost_usd - before
            self.budget.spend(cost)
            self.daily.spend(cost)

    def take_usage(self) -> Usage:
        """What the calls since the last take cost (stored with the chunk they were for)."""
        usage, self.usage = self.usage, Usage()
        return usage


def summary(mentions: list[NewMention], counts: tuple[int, int], limit: int = 10) -> str:
    """One line for the CRM note: the numbers, and the most mentioned names."""
    seen: dict[str, int] = {}
    for mention in mentions:
        seen[mention.surface] = seen.get(mention.surface, 0) + 1
    top = sorted(seen, key=lambda s: (-seen[s], s))[:limit]
    return f"Knowledge graph: {counts[0]} entities, {counts[1]} relations." + (
        f" Main entities: {', '.join(top)}." if top else ""
    )


_note_lock = threading.Lock()


@functools.cache
def _log_no_key() -> None:
    logger.info(
        "OPENROUTER_API_KEY is not set: knowledge extraction is skipped for every asset (status `skipped`)."
    )


def _note_no_key() -> None:
    """Say it once per process: functools.cache alone lets two threads that skip at once both say it."""
    with _note_lock:
        _log_no_key()


def rebuild_contribution(asset_id: str, settings: Settings) -> bool:
    """Derive the asset's mentions again from its stored text and the stored chunk results of the model that built
    it, with no LLM call, and store them (``worker graph rebuild``); False when a chunk's result is not stored."""
    from worker_service.database import Asset, AssetText, LlmUsage, session

    with session():
        asset = Asset.get_or_none(Asset.asset_id == asset_id)
        text = AssetText.get_or_none(AssetText.asset == asset_id)
        usage = LlmUsage.get_or_none(LlmUsage.asset == asset_id)
    if asset is None or text is None:
        return False
    model = usage.model if usage is not None and usage.model else settings.openrouter_model
    spans = chunk_spans(text.text, settings.knowledge_chunk_chars, settings.knowledge_chunk_overlap)
    keys = [chunk_key(model, text.text[start:end].strip()) for start, end in spans]
    results = stored_chunks(set(keys))
    if any(key not in results for key in keys):
        return False
    extractions = [results[key].extraction for key in keys]
    mentions, relations = mentions_of(text.text, spans, extractions)
    generation = (int(asset.knowledge_gen_ts), str(asset.knowledge_gen_id))
    return (
        store_contribution(
            asset_id,
            generation,
            mentions,
            relations,
            model,
            chunks=len(keys),
            failed_chunks=sum(e is None for e in extractions),
        )
        is not None
    )


#: how long the paying lease outlives its holder's last renewal (a killed worker frees the asset after this)
PAYING_LEASE_S = 30.0


@contextmanager
def paying_alone(asset_id: str) -> Iterator[None]:
    """The fleet-wide lease on ``asset_id``'s paid calls, renewed every third of PAYING_LEASE_S from a thread
    while the calls run (a killed worker stops renewing: the asset is free again within PAYING_LEASE_S); a
    delivery that finds another holding it is deferred without spending an attempt."""
    lock = limiter_of(dramatiq.get_broker()).client.lock(
        f"worker:knowledge:paying:{asset_id}", timeout=PAYING_LEASE_S, blocking=False
    )
    if not lock.acquire():
        raise TransientError(
            f"another delivery of {asset_id}'s knowledge is paying for its chunks now",
            error_code="knowledge_running",
            retry_after_ms=5_000,
            spends_attempt=False,
        )
    done = threading.Event()

    def renew() -> None:
        while not done.wait(PAYING_LEASE_S / 3):
            try:
                lock.reacquire()
            except (redis.exceptions.RedisError, redis.exceptions.LockError):
                logger.warning(
                    "Could not renew the paying lease of %s; another delivery may pay too.", asset_id
                )
                return

    renewer = threading.Thread(target=renew, name=f"lease-{asset_id}"[:60], daemon=True)
    renewer.start()
    try:
        yield
    finally:
        done.set()
        try:
            lock.release()
        except redis.exceptions.LockError:  # expired meanwhile: nothing of ours to release
            pass


def build_knowledge_graph(asset_id: str, *, generation: Generation, settings: Settings) -> None:
    """Chunk the asset's stored text, extract each chunk once (resuming and reusing stored chunks), merge and
    replace the graph of ``generation``; then send the CRM note when the asset has a lead."""
    if not settings.openrouter_api_key:
        extracted_asset(asset_id)  # a skip too comes after the asset's own end
        _note_no_key()
        raise SkipWork("OPENROUTER_API_KEY is not set: knowledge extraction skipped, no graph produced")
    asset, text = load_asset(asset_id)
    client = _client(settings)
    spans = chunk_spans(text, settings.knowledge_chunk_chars, settings.knowledge_chunk_overlap)
    chunks = [text[start:end].strip() for start, end in spans]
    budget = AssetBudget(
        settings.knowledge_max_chunks, settings.knowledge_max_cost_usd, spent_usd(asset_id, generation)
    )
    budget.check_chunks(len(chunks))
    calls = PaidCalls(client, budget, _daily_budget(settings))
    keys = [chunk_key(client.model, chunk) for chunk in chunks]
    results = stored_chunks(set(keys))
    resumed = len(results)
    yield_at = time.monotonic() + settings.knowledge_time_limit_seconds / 2
    if len(results) < len(set(keys)):  # something to pay for: one delivery at a time
        with paying_alone(asset_id):
            results.update(stored_chunks(set(keys) - results.keys()))  # paid by the holder we waited for
            for number, (chunk, key) in enumerate(zip(chunks, keys, strict=True), start=1):
                if key in results:
                    continue
                if time.monotonic() > yield_at:
                    raise Continue(
                        f"{number - 1} of {len(chunks)} chunks done; the rest continues behind other work"
                    )
                result = extract_chunk(calls.chat, chunk)
                store_chunk(asset_id, generation, key, client.model, result, calls.take_usage())
                results[key] = result
    extractions = [results[key].extraction for key in keys]
    failed = sum(e is None for e in extractions)
    if chunks and failed == len(chunks):
        raise PermanentError(
            f"every chunk's output was invalid after one repair attempt: {results[keys[0]].error}",
            error_code="invalid_llm_output",
        )
    mentions, relations = mentions_of(text, spans, extractions)
    counts = store_contribution(
        asset_id, generation, mentions, relations, client.model, chunks=len(chunks), failed_chunks=failed
    )
    if counts is None:
        logger.info("Graph of %s not stored: a newer generation owns it (or it was deleted).", asset_id)
        return
    logger.info(
        "Knowledge graph of %s: %d chunks (%d already stored, %d invalid), %d mentions of %d entities, "
        "%d relations, $%.5f paid by this asset.",
        asset_id,
        len(chunks),
        resumed,
        failed,
        len(mentions),
        counts[0],
        counts[1],
        budget.spent_usd,
    )
    if asset.crm_lead_id:
        note = build_message(
            "crm_add_note",
            {
                "entity": "leads",
                "entity_id": asset.crm_lead_id,
                "text": f"{asset.filename or asset_id}: {summary(mentions, counts)}",
                "idempotency_key": f"knowledge:{asset_id}:{asset.sha256}",
            },
        )
        dramatiq.get_broker().enqueue(Message(**{**note, "args": ()}))
