"""worker_service.knowledge.store: knowledge waits, without spending an attempt, until its asset is extracted."""

from __future__ import annotations

import pytest


def test_knowledge_waits_for_its_asset_to_be_extracted_without_spending_an_attempt(tmp_path):
    """Regression (seen in CI): process_asset sends extract_knowledge before its own status is written, and
    a fast knowledge skip finished first: knowledge.skipped went out before asset.extracted."""
    from worker_service.database import Asset, init_database, migrate, session
    from worker_service.errors import PermanentError, TransientError
    from worker_service.knowledge.store import extracted_asset

    init_database(f"sqlite:///{tmp_path}/k.db")
    migrate()
    with session(transaction=True):
        Asset.insert(asset_id="w1", status="processing").execute()
    with pytest.raises(TransientError) as waiting:
        extracted_asset("w1")
    assert waiting.value.error_code == "not_ready" and waiting.value.spends_attempt is False
    with session(transaction=True):
        Asset.update(status="extracted").where(Asset.asset_id == "w1").execute()
    assert extracted_asset("w1").asset_id == "w1"
    with session(transaction=True):
        Asset.update(status="failed").where(Asset.asset_id == "w1").execute()
    with pytest.raises(PermanentError):
        extracted_asset("w1")
