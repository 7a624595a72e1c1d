"""Processing one asset: fetch, hash, skip unchanged content, sniff, extract in a hard-limited child, store.

``process_asset`` (actors/assets.py) calls :func:`process_asset_source`; statuses, retries and dead
letters are the middleware's. On success (or unchanged content whose knowledge never ran) the asset's
``extract_knowledge`` message is sent.
"""

from __future__ import annotations

import hashlib
import logging
import time
import uuid
from pathlib import Path

import dramatiq
from dramatiq.message import Message
from worker_contracts import build_message

from settings import Settings
from worker_service.assets.fetch import FetchPolicy, fetched
from worker_service.assets.progress import ProgressWatch
from worker_service.assets.sniff import sniff
from worker_service.assets.store import store_result, unchanged
from worker_service.database.tracks import Generation
from worker_service.runtime.hardlimit import run_hard_limited
from worker_service.runtime.worker_groups import usable_cpus

logger = logging.getLogger(__name__)


def fetch_policy(settings: Settings) -> FetchPolicy:
    return FetchPolicy(
        storage_root=settings.storage_root,
        max_bytes=settings.max_upload_mb * 1024 * 1024,
        connect_timeout=settings.fetch_connect_timeout_seconds,
        read_timeout=settings.fetch_read_timeout_seconds,
        allow_http=settings.fetch_allow_http,
        deadline_s=settings.fetch_deadline_seconds,
        allowlist=tuple(x.strip() for x in settings.fetch_allowlist.split(",") if x.strip()),
    )


def extraction_limits(settings: Settings) -> dict[str, object]:
    """What the extraction child is held to beyond time and memory (passed to it, never read there)."""
    return {
        "max_pdf_pages": settings.max_pdf_pages,
        "pdf_tables": settings.pdf_tables,
        "docx_max_entries": settings.docx_max_entries,
        "docx_max_uncompressed_mb": settings.docx_max_uncompressed_mb,
        "docx_max_ratio": settings.docx_max_ratio,
        "max_cells": settings.spreadsheet_max_cells,
        "max_image_pixels": settings.max_image_pixels,
        "ocr_languages": settings.ocr_languages,
        "ocr_page_timeout_seconds": settings.ocr_page_timeout_seconds,
        # the assets group's threads on this host: a multi-page scan reads pages on the idle ones
        "ocr_slots": settings.assets_processes * (settings.assets_threads or usable_cpus()),
    }


#: types whose extraction may OCR pages, and so gets OCR_TIMEOUT_SECONDS instead of EXTRACT_TIMEOUT_SECONDS
MAY_OCR = ("pdf", "image")


def _sha256(path: str) -> tuple[str, int]:
    digest = hashlib.sha256()
    size = 0
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
    return digest.hexdigest(), size


def send_extract_knowledge(asset_id: str) -> None:
    data = build_message("extract_knowledge", {"asset_id": asset_id})
    dramatiq.get_broker().enqueue(Message(**{**data, "args": ()}))


def process_asset_source(
    asset_id: str,
    source: str,
    *,
    filename: str | None,
    content_type: str | None,
    generation: Generation,
    settings: Settings,
) -> None:
    """Extract and store the text of ``source`` for ``asset_id`` in ``generation``."""
    with fetched(source, fetch_policy(settings)) as path:
        sha256, size = _sha256(path)
        known = unchanged(asset_id, sha256)
        if known is not None:
            logger.info("Asset %s content unchanged (sha256 %s); nothing to do.", asset_id, sha256[:12])
            if known.knowledge_status in (None, "pending"):
                send_extract_knowledge(asset_id)
            return
        detected = sniff(path, filename=filename, content_type=content_type)
        started = time.monotonic()
        progress_dir = Path(settings.storage_root) / ".tmp"
        progress_dir.mkdir(parents=True, exist_ok=True)
        progress = progress_dir / f"progress-{uuid.uuid4().hex}"
        with ProgressWatch(asset_id, generation, progress):
            result = run_hard_limited(
                "worker_service.assets.extraction:extract",
                path,
                detected,
                {**extraction_limits(settings), "progress_path": str(progress)},
                timeout_s=settings.ocr_timeout_seconds
                if detected in MAY_OCR
                else settings.extract_timeout_seconds,
                memory_mb=settings.extract_memory_mb,
            )
        seconds = time.monotonic() - started
    stored = store_result(
        asset_id, generation, result=result, sha256=sha256, size=size, detected_type=detected, seconds=seconds
    )
    if result.get("ocr_unavailable"):
        logger.warning(
            "Asset %s: pages that needed OCR were left without text: %s", asset_id, result["ocr_unavailable"]
        )
    if stored:
        logger.info(
            "Asset %s extracted: %s, %s pages (%d by OCR), %d chars%s in %.2f s.",
            asset_id,
            detected,
            result.get("pages"),
            result.get("ocr_pages") or 0,
            len(result["text"]),
            " (no text)" if result.get("no_text") else "",
            seconds,
        )
        send_extract_knowledge(asset_id)
