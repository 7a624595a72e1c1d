"""Knowledge domain: ``extract_knowledge`` builds an asset's knowledge graph through OpenRouter.

Actor ``extract_knowledge`` (queue ``knowledge``), payload ``contracts.ExtractKnowledge``.
Options: ``status_track="knowledge"`` (pending -> processing <-> retrying ->
done | skipped | failed), ``rate_limit="openrouter"`` (one fleet-wide slot
per HTTP request; 429/402 pause the upstream without spending attempts),
budgets and soft time limit from the KNOWLEDGE_* settings.

The text is chunked (KNOWLEDGE_CHUNK_CHARS/OVERLAP); each chunk's output is
validated, repaired once if invalid, then merged (normalised name + type;
relation weights summed) and the asset's previous graph is replaced in one
transaction.  No OPENROUTER_API_KEY: the status is ``skipped`` and no graph
is invented.  When the asset has a ``crm_lead_id``, a ``crm_add_note`` with a
summary follows, idempotency key ``knowledge:{asset_id}:{sha256}``.
"""

from __future__ import annotations

import functools
import logging
import threading

import dramatiq
from dramatiq.message import Message
from dramatiq.middleware import CurrentMessage

from actors.knowledge.graph import SCHEMA, Graph, chunk_text, extract_chunk
from actors.knowledge.openrouter import OpenRouterClient, Usage
from actors.knowledge.store import load_asset, replace_graph
from contracts import build_message
from database.tracks import generation_of
from errors import SkipWork
from ratelimiter import limiter_of
from settings import get_settings

logger = logging.getLogger(__name__)
_settings = get_settings()


def _client() -> OpenRouterClient:
    return OpenRouterClient(
        base_url=_settings.openrouter_base_url, api_key=_settings.openrouter_api_key or "",
        model=_settings.openrouter_model, limiter=limiter_of(dramatiq.get_broker()),
        timeout_s=_settings.openrouter_timeout_seconds, app_url=_settings.app_url, app_title=_settings.app_title,
        payment_pause_ms=_settings.openrouter_payment_pause_seconds * 1000)


_note_lock = threading.Lock()


@functools.cache
def _log_no_key() -> None:
    logger.info("OPENROUTER_API_KEY is not set: knowledge extraction is skipped for every asset (status `skipped`).")


def _note_no_key() -> None:
    """Say it once per process: functools.cache alone lets two threads that skip at once both say it."""
    with _note_lock:
        _log_no_key()


# throws: a skip is an expected end (Dramatiq logs it at INFO, without a traceback), not a failure.
@dramatiq.actor(queue_name="knowledge", status_track="knowledge", rate_limit="openrouter", throws=(SkipWork,),
                max_attempts=_settings.knowledge_max_attempts, retry_hours=_settings.knowledge_retry_hours,
                time_limit=_settings.knowledge_time_limit_seconds * 1000)
def extract_knowledge(asset_id: str) -> None:
    if not _settings.openrouter_api_key:
        _note_no_key()
        raise SkipWork("OPENROUTER_API_KEY is not set: knowledge extraction skipped, no graph produced")
    asset, text = load_asset(asset_id)
    client = _client()
    usage = Usage()
    graph = Graph()
    chunks = chunk_text(text, _settings.knowledge_chunk_chars, _settings.knowledge_chunk_overlap)
    for index, chunk in enumerate(chunks):
        graph.add(extract_chunk(lambda messages: client.chat(messages, schema=SCHEMA, usage=usage), chunk,
                                index=index, total=len(chunks)))
    message = CurrentMessage.get_current_message()
    if not replace_graph(asset_id, generation_of(message), graph, usage, client.model):
        logger.info("Graph of %s not stored: a newer generation owns it.", asset_id)
        return
    logger.info("Knowledge graph of %s: %d chunks, %d entities, %d relations, %d tokens, $%.5f.", asset_id,
                len(chunks), len(graph.entities), len(graph.relations),
                usage.prompt_tokens + usage.completion_tokens, usage.cost_usd)
    if asset.crm_lead_id:
        note = build_message("crm_add_note", {"entity": "leads", "entity_id": asset.crm_lead_id,
                                              "text": f"{asset.filename or asset_id}: {graph.summary()}",
                                              "idempotency_key": f"knowledge:{asset_id}:{asset.sha256}"})
        dramatiq.get_broker().enqueue(Message(**{**note, "args": ()}))
