"""Assets domain: ``process_asset`` turns a PDF, DOCX or text file into stored text.

Actor ``process_asset`` (queue ``assets``), payload ``worker_contracts.ProcessAsset``.
Options: ``status_track="asset"`` (received -> processing <-> retrying ->
extracted | failed), attempt/time budgets and the soft time limit from the
ASSETS_* settings.  Extraction runs in a hard-limited child
(EXTRACT_TIMEOUT_SECONDS, EXTRACT_MEMORY_MB).  On success the text is stored
and ``extract_knowledge`` is sent; the same content again is a no-op success.
"""

from __future__ import annotations

import hashlib
import logging
import time

import dramatiq
from dramatiq.message import Message
from dramatiq.middleware import CurrentMessage
from worker_contracts import build_message

from actors.assets.fetch import FetchPolicy, fetched
from actors.assets.sniff import sniff
from actors.assets.store import store_result, unchanged
from database.tracks import generation_of
from sandbox import run_hard_limited
from settings import get_settings

logger = logging.getLogger(__name__)
_settings = get_settings()


def _policy() -> FetchPolicy:
    return FetchPolicy(
        storage_root=_settings.storage_root, max_bytes=_settings.max_upload_mb * 1024 * 1024,
        connect_timeout=_settings.fetch_connect_timeout_seconds, read_timeout=_settings.fetch_read_timeout_seconds,
        allow_http=_settings.fetch_allow_http,
        allowlist=tuple(x.strip() for x in _settings.fetch_allowlist.split(",") if x.strip()),
    )


def _sha256(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def _send_extract_knowledge(asset_id: str) -> None:
    data = build_message("extract_knowledge", {"asset_id": asset_id})
    dramatiq.get_broker().enqueue(Message(**{**data, "args": ()}))


@dramatiq.actor(queue_name="assets", status_track="asset", max_attempts=_settings.assets_max_attempts,
                retry_hours=_settings.assets_retry_hours, time_limit=_settings.assets_time_limit_seconds * 1000)
def process_asset(asset_id: str, source: str, filename: str | None = None, content_type: str | None = None,
                  crm_lead_id: int | None = None) -> None:
    message = CurrentMessage.get_current_message()
    with fetched(source, _policy()) as path:
        sha256, size = _sha256(path)
        known = unchanged(asset_id, sha256)
        if known is not None:
            logger.info("Asset %s content unchanged (sha256 %s); nothing to do.", asset_id, sha256[:12])
            if known.knowledge_status in (None, "pending"):
                _send_extract_knowledge(asset_id)
            return
        detected = sniff(path, filename=filename, content_type=content_type)
        started = time.monotonic()
        result = run_hard_limited(
            "extraction:extract", path, detected,
            {"max_pdf_pages": _settings.max_pdf_pages, "pdf_tables": _settings.pdf_tables,
             "docx_max_entries": _settings.docx_max_entries,
             "docx_max_uncompressed_mb": _settings.docx_max_uncompressed_mb,
             "docx_max_ratio": _settings.docx_max_ratio},
            timeout_s=_settings.extract_timeout_seconds, memory_mb=_settings.extract_memory_mb)
        seconds = time.monotonic() - started
    stored = store_result(asset_id, generation_of(message), result=result, sha256=sha256, size=size,
                          detected_type=detected, seconds=seconds)
    if stored:
        logger.info("Asset %s extracted: %s, %s pages, %d chars%s in %.2f s.", asset_id, detected,
                    result.get("pages"), len(result["text"]), " (no text)" if result.get("no_text") else "", seconds)
        _send_extract_knowledge(asset_id)
