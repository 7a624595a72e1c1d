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
``invalid_llm_output``.  The graph is merged (normalised name + type;
relation weights summed) and replaces the previous one in one transaction.
No OPENROUTER_API_KEY: the status is ``skipped`` and no graph is invented.
When the asset has a ``crm_lead_id``, a ``crm_add_note`` with a summary
follows, idempotency key ``knowledge:{asset_id}:{sha256}``.
"""

from __future__ import annotations

import functools
import logging
import threading
import time

import dramatiq
from dramatiq.message import Message
from worker_contracts import build_message

from settings import Settings
from worker_service.database.tracks import Generation
from worker_service.errors import Continue, PermanentError, SkipWork
from worker_service.knowledge.budgets import AssetBudget, DailyBudget
from worker_service.knowledge.graph import SCHEMA, Graph, chunk_key, chunk_pages, chunk_spans, extract_chunk
from worker_service.knowledge.openrouter import UPSTREAM, OpenRouterClient, Usage
from worker_service.knowledge.store import (
    extracted_asset,
    load_asset,
    replace_graph,
    spent_usd,
    store_chunk,
    stored_chunks,
)
from worker_service.ratelimit import limiter_of

logger = logging.getLogger(__name__)


def _client(settings: Settings) -> OpenRouterClient:
    return OpenRouterClient(
        base_url=settings.openrouter_base_url, api_key=settings.openrouter_api_key or "",
        model=settings.openrouter_model, limiter=limiter_of(dramatiq.get_broker()),
        timeout_s=settings.openrouter_timeout_seconds, app_url=settings.app_url, app_title=settings.app_title,
        payment_pause_ms=settings.openrouter_payment_pause_seconds * 1000)


def _daily_budget(settings: Settings) -> DailyBudget:
    limiter = limiter_of(dramatiq.get_broker())
    return DailyBudget(limiter.client, limiter, UPSTREAM, settings.openrouter_daily_budget_usd,
                       namespace=limiter.namespace)


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


_note_lock = threading.Lock()


@functools.cache
def _log_no_key() -> None:
    logger.info("OPENROUTER_API_KEY is not set: knowledge extraction is skipped for every asset (status `skipped`).")


def _note_no_key() -> None:
    """Say it once per process: functools.cache alone lets two threads that skip at once both say it."""
    with _note_lock:
        _log_no_key()


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
    pages = chunk_pages(text, spans)
    budget = AssetBudget(settings.knowledge_max_chunks, settings.knowledge_max_cost_usd,
                         spent_usd(asset_id, generation))
    budget.check_chunks(len(chunks))
    calls = PaidCalls(client, budget, _daily_budget(settings))
    keys = [chunk_key(client.model, chunk) for chunk in chunks]
    results = stored_chunks(set(keys))
    resumed = len(results)
    yield_at = time.monotonic() + settings.knowledge_time_limit_seconds / 2
    for number, (chunk, key) in enumerate(zip(chunks, keys, strict=True), start=1):
        if key in results:
            continue
        if time.monotonic() > yield_at:
            raise Continue(f"{number - 1} of {len(chunks)} chunks done; the rest continues behind other work")
        result = extract_chunk(calls.chat, chunk)
        store_chunk(asset_id, generation, key, client.model, result, calls.take_usage())
        results[key] = result
    graph = Graph()
    failed = 0
    for key, chunk_pages_ in zip(keys, pages, strict=True):
        extraction = results[key].extraction
        if extraction is None:
            failed += 1
        else:
            graph.add(extraction, chunk_pages_)
    if chunks and failed == len(chunks):
        raise PermanentError(f"every chunk's output was invalid after one repair attempt: {results[keys[0]].error}",
                             error_code="invalid_llm_output")
    if not replace_graph(asset_id, generation, graph, client.model, chunks=len(chunks), failed_chunks=failed):
        logger.info("Graph of %s not stored: a newer generation owns it.", asset_id)
        return
    logger.info("Knowledge graph of %s: %d chunks (%d already stored, %d invalid), %d entities, %d relations, "
                "$%.5f paid by this asset.", asset_id, len(chunks), resumed, failed, len(graph.entities),
                len(graph.relations), budget.spent_usd)
    if asset.crm_lead_id:
        note = build_message("crm_add_note", {"entity": "leads", "entity_id": asset.crm_lead_id,
                                              "text": f"{asset.filename or asset_id}: {graph.summary()}",
                                              "idempotency_key": f"knowledge:{asset_id}:{asset.sha256}"})
        dramatiq.get_broker().enqueue(Message(**{**note, "args": ()}))
