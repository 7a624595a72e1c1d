"""Status tracking: atomic, monotonic within a generation; late duplicates and old generations cannot regress."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest
from dramatiq.broker import MessageProxy
from dramatiq.message import Message
from dramatiq.middleware import SkipMessage

from middleware.deadletters import DeadLetters
from middleware.status import StatusTracking
from worker_service.database import Asset, init_database, migrate, session
from worker_service.errors import TransientError
from worker_service.outcome import Dead, Retrying, conclude, kill


class _Broker:
    def get_actor(self, name: str):
        return SimpleNamespace(options={"status_track": "asset"})


@pytest.fixture()
def tracker(tmp_path):
    init_database(f"sqlite:///{tmp_path}/status.db")
    migrate()
    return StatusTracking()


def _message(
    asset_id: str, *, ts: int | None = None, message_id: str | None = None, **options
) -> MessageProxy:
    return MessageProxy(
        Message(
            queue_name="assets",
            actor_name="process_asset",
            args=(),
            kwargs={"asset_id": asset_id, "source": "file:x"},
            options=options,
            message_id=message_id or str(uuid.uuid4()),
            message_timestamp=ts or int(time.time() * 1000),
        )
    )


def _status(asset_id: str) -> tuple:
    with session():
        a = Asset.get_by_id(asset_id)
        return a.status, a.attempts, a.error_code


def test_success_path_is_timestamped(tracker):
    m = _message("a")
    tracker.before_process_message(_Broker(), m)
    assert _status("a") == ("processing", 1, None)
    tracker.after_process_message(_Broker(), m)
    with session():
        a = Asset.get_by_id("a")
    assert a.status == "extracted" and a.started_at and a.finished_at and a.updated_at >= a.created_at


def _sink() -> DeadLetters:
    sink = DeadLetters()
    sink.broker = _Broker()
    return sink


def test_retrying_then_failed_records_attempts_and_error(tracker):
    m = _message("b")
    tracker.before_process_message(_Broker(), m)
    conclude(m, Retrying(int(time.time() * 1000) + 5000, "TransientError: x"))
    tracker.after_process_message(_Broker(), m, exception=TransientError("x"))
    assert _status("b") == ("retrying", 1, None)
    retry = MessageProxy(m._message.copy(options={"retries": 1}))
    tracker.before_process_message(_Broker(), retry)
    assert _status("b") == ("processing", 2, None)
    dead = Dead.of("permanent_error", RuntimeError("bad"), error_code="corrupt")
    kill(retry, dead)
    tracker.after_process_message(_Broker(), retry, exception=RuntimeError("bad"))
    assert _status("b") == ("processing", 2, None)  # a Dead outcome is the dead-letter sink's to write
    _sink().record(retry, dead)
    assert _status("b") == ("failed", 2, "corrupt")


def test_a_dead_letter_fails_the_record_only_in_its_own_generation(tracker):
    now = int(time.time() * 1000)
    crashed = _message("f", ts=now)
    tracker.before_process_message(_Broker(), crashed)
    # the consumer rejects it before any middleware runs (crash loop): only the sink sees it
    _sink().record(crashed, Dead.of("crash_loop", RuntimeError("worker process died 3 times")))
    assert _status("f") == ("failed", 1, "crash_loop")
    # a dead letter of an older generation cannot touch a newer one, nor a finished one
    newer = _message("f", ts=now + 10)
    tracker.before_process_message(_Broker(), newer)
    tracker.after_process_message(_Broker(), newer)
    _sink().record(_message("f", ts=now + 5), Dead.of("invalid_payload", ValueError("x")))
    _sink().record(newer, Dead.of("crash_loop", RuntimeError("late")))
    assert _status("f")[0] == "extracted"
    # a message rejected before it ever started creates its record, failed
    _sink().record(_message("g"), Dead.of("invalid_payload", ValueError("bad field")))
    assert _status("g") == ("failed", 0, "invalid_payload")


def test_late_duplicate_cannot_regress_a_finished_record(tracker):
    m = _message("c")
    tracker.before_process_message(_Broker(), m)
    tracker.after_process_message(_Broker(), m)
    duplicate = _message("c", ts=m.message_timestamp, message_id=m.message_id)
    with pytest.raises(SkipMessage):
        tracker.before_process_message(_Broker(), duplicate)
    assert _status("c")[0] == "extracted"
    # a stale "retrying" from the old attempt cannot move it back either
    conclude(m, Retrying(0, "late"))
    tracker.after_process_message(_Broker(), m, exception=TransientError("late"))
    assert _status("c")[0] == "extracted"


def test_older_generation_is_skipped_and_newer_generation_resets(tracker):
    now = int(time.time() * 1000)
    new = _message("d", ts=now)
    tracker.before_process_message(_Broker(), new)
    old = _message("d", ts=now - 60_000)
    with pytest.raises(SkipMessage):
        tracker.before_process_message(_Broker(), old)
    tracker.after_process_message(_Broker(), new)
    assert _status("d")[0] == "extracted"
    requeued = _message("d", ts=now - 60_000, generation=now + 1)  # a requeued dead letter: new generation
    tracker.before_process_message(_Broker(), requeued)
    assert _status("d") == ("processing", 1, None)
    # the superseded generation's late success does not overwrite the new one
    tracker.after_process_message(_Broker(), new)
    assert _status("d")[0] == "processing"


def test_database_down_defers_instead_of_processing(tracker, tmp_path):
    from worker_service.brokers.settle import get_successor

    init_database(f"sqlite:///{tmp_path}/missing-dir/../nonexistent.db")  # no tables: every query fails
    m = _message("e")
    with pytest.raises(SkipMessage):
        tracker.before_process_message(_Broker(), m)
    successor = get_successor(m)
    assert successor is not None and successor.delay_ms > 0
    assert successor.message.message_id == m.message_id


class _TrackBroker:
    def get_actor(self, name: str):
        return SimpleNamespace(
            options={"status_track": "knowledge" if name == "extract_knowledge" else "asset"}
        )


def test_knowledge_that_starts_before_the_asset_message_finishes_still_ends_done(tracker):
    """Regression: the asset's success hook reset knowledge_status to pending *after* a fast knowledge
    message had started, so that message could never record `done` (seen once idle consumers stopped polling)."""
    from worker_service.assets.store import store_result

    broker = _TrackBroker()
    asset = _message("race")
    tracker.before_process_message(broker, asset)
    store_result(
        "race",
        (asset.message_timestamp, asset.message_id),
        result={"text": "hello", "pages": 1},
        sha256="0" * 64,
        size=5,
        detected_type="text",
        seconds=0.01,
    )
    # extract_knowledge was sent by the actor and is picked up before the asset's after-hooks run.
    knowledge = MessageProxy(
        Message(
            queue_name="knowledge",
            actor_name="extract_knowledge",
            args=(),
            kwargs={"asset_id": "race"},
            options={},
            message_id=str(uuid.uuid4()),
            message_timestamp=int(time.time() * 1000) + 1,
        )
    )
    tracker.before_process_message(broker, knowledge)
    tracker.after_process_message(broker, asset)
    tracker.after_process_message(broker, knowledge)
    with session():
        record = Asset.get_by_id("race")
    assert (record.status, record.knowledge_status) == ("extracted", "done")


def test_a_dead_letter_whose_asset_id_the_contract_refuses_is_stored_without_a_record(tracker):
    """Regression: a 300-character asset_id (an invalid payload) failed the record insert on PostgreSQL, which
    aborted the dead letter too, so it went round as pending forever."""
    from worker_service.database import DeadLetter

    message = _message("x" * 300)
    _sink().record(message, Dead.of("invalid_payload", ValueError("asset_id: too long")))
    with session():
        assert DeadLetter.select().count() == 1 and Asset.select().count() == 0
