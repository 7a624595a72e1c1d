"""worker_service.reconciliation: which records the reconciler repairs and which it must leave."""

from __future__ import annotations

import time

from worker_service.reconciliation import MAX_REBUILDS, Candidate, decide, rebuild_message

NOW = int(time.time() * 1000)


def _asset(asset_id: str, status: str = "processing", **kwargs) -> Candidate:
    return Candidate(
        track="asset",
        asset_id=asset_id,
        status=status,
        generation=(NOW - 600_000, f"m-{asset_id}"),
        source=kwargs.pop("source", f"file:{asset_id}.txt"),
        **kwargs,
    )


def test_a_record_whose_message_is_present_is_left_alone_and_forgotten_as_a_suspect():
    # present covers queued, delayed (a retry waiting in the delay queue) and held by a slow worker alike
    repairs, suspects = decide(
        [_asset("a")], present={("asset", "a")}, suspects={"asset:a": NOW - 1}, rebuilds={}, now_ms=NOW
    )
    assert repairs == [] and suspects == {}


def test_missing_once_is_only_a_suspect_missing_twice_is_repaired():
    repairs, suspects = decide([_asset("a")], present=set(), suspects={}, rebuilds={}, now_ms=NOW)
    assert repairs == [] and suspects == {"asset:a": NOW}
    repairs, suspects = decide(
        [_asset("a")], present=set(), suspects=suspects, rebuilds={}, now_ms=NOW + 60_000
    )
    assert [(r.candidate.asset_id, r.action) for r in repairs] == [("a", "requeued")]
    assert suspects == {}


def test_tracks_are_told_apart():
    knowledge = Candidate(
        track="knowledge", asset_id="a", status="pending", generation=(0, ""), asset_status="extracted"
    )
    repairs, suspects = decide(
        [_asset("a"), knowledge],
        present={("asset", "a")},
        suspects={"knowledge:a": NOW},
        rebuilds={},
        now_ms=NOW,
    )
    assert [(r.candidate.track, r.action) for r in repairs] == [("knowledge", "requeued")]


def test_a_record_that_cannot_rebuild_its_message_is_failed():
    no_source = _asset("s", source=None)
    bad_source = _asset("b", source="ftp://elsewhere/x")  # would not pass the payload contract
    no_text = Candidate(
        track="knowledge", asset_id="k", status="processing", generation=(NOW, "m"), asset_status="failed"
    )
    suspects = {"asset:s": NOW, "asset:b": NOW, "knowledge:k": NOW}
    repairs, _ = decide([no_source, bad_source, no_text], set(), suspects, {}, NOW)
    assert [(r.candidate.asset_id, r.action) for r in repairs] == [
        ("s", "failed"),
        ("b", "failed"),
        ("k", "failed"),
    ]


def test_a_message_lost_again_and_again_ends_failed_instead_of_looping():
    repairs, _ = decide([_asset("a")], set(), {"asset:a": NOW}, {"asset:a": MAX_REBUILDS}, NOW)
    assert [r.action for r in repairs] == ["failed"]


def test_the_rebuilt_message_continues_the_records_generation_with_a_fresh_budget():
    candidate = _asset("a", filename="a.txt", crm_lead_id=7)
    message = rebuild_message(candidate, rebuilds=0)
    assert (message.actor_name, message.queue_name) == ("process_asset", "assets")
    assert message.kwargs == {"asset_id": "a", "source": "file:a.txt", "filename": "a.txt", "crm_lead_id": 7}
    assert (message.options["generation"], message.message_id) == candidate.generation
    assert message.options["budget_started_at"] > NOW - 600_000  # not dead of age_limit on arrival
    fresh = rebuild_message(
        _asset("r", status="received"), rebuilds=0
    )  # never started: a generation of its own
    assert fresh.options["generation"] > NOW - 600_000 and fresh.message_id != "m-r"
