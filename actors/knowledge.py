"""Knowledge domain: ``extract_knowledge`` builds an asset's knowledge graph through OpenRouter.

Actor ``extract_knowledge`` (queue ``knowledge``), payload ``worker_contracts.ExtractKnowledge``.
Options: ``status_track="knowledge"`` (pending -> processing <-> retrying -> done | skipped | failed),
``rate_limit="openrouter"`` (one fleet-wide slot per HTTP request; 429/402 pause the upstream without
spending attempts), ``throws=(SkipWork,)`` (a skip is an expected end: logged at INFO without a traceback),
budgets and soft time limit from the KNOWLEDGE_* settings. The work itself, its budgets and its cache are
``worker_service.knowledge.extract``.
"""

from __future__ import annotations

import dramatiq
from dramatiq.middleware import CurrentMessage

from settings import get_settings
from worker_service.database.tracks import generation_of
from worker_service.errors import SkipWork
from worker_service.knowledge.extract import build_knowledge_graph

_settings = get_settings()


@dramatiq.actor(
    queue_name="knowledge",
    status_track="knowledge",
    rate_limit="openrouter",
    throws=(SkipWork,),
    max_attempts=_settings.knowledge_max_attempts,
    retry_hours=_settings.knowledge_retry_hours,
    time_limit=_settings.knowledge_time_limit_seconds * 1000,
)
def extract_knowledge(asset_id: str) -> None:
    build_knowledge_graph(
        asset_id, generation=generation_of(CurrentMessage.get_current_message()), settings=_settings
    )
