"""worker_service.assets.progress: the child's page count reaches the record while a long OCR runs (issue 41)."""

from __future__ import annotations

import time

import pytest

from worker_service.assets.extraction import report_progress
from worker_service.assets.progress import ProgressWatch
from worker_service.database import Asset, init_database, migrate, session


@pytest.fixture()
def processing(tmp_path):
    """A record processing in generation (5, "g")."""
    init_database(f"sqlite:///{tmp_path}/p.db")
    migrate()
    with session():
        Asset.create(asset_id="scan", status="processing", gen_ts=5, gen_id="g")


def test_the_childs_page_count_reaches_the_record_while_it_runs_and_is_cleared_after(tmp_path, processing):
    progress = tmp_path / "progress-1"

    def shown() -> str | None:
        with session():
            return Asset.get_by_id("scan").progress

    with ProgressWatch("scan", (5, "g"), progress, every_s=0.05):
        report_progress(str(progress), 3, 20)
        deadline = time.monotonic() + 5
        while shown() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert shown() == "OCR: page 3 of 20"
    assert shown() is None and not progress.exists()


def test_a_newer_generation_is_not_written_by_an_older_extraction(tmp_path, processing):
    """One round of the watcher, run here (no thread, no waiting): the line reaches the record of its own
    generation, and never the record a newer generation owns."""
    progress = tmp_path / "progress-2"
    report_progress(str(progress), 1, 2)
    ProgressWatch("scan", (4, "older"), progress).copy_once()
    with session():
        assert Asset.get_by_id("scan").progress is None
    ProgressWatch("scan", (5, "g"), progress).copy_once()
    with session():
        assert Asset.get_by_id("scan").progress == "OCR: page 1 of 2"
