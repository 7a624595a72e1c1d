"""middleware.deadletters: the sink stores the final error; a row it cannot store travels as a pending marker."""

from __future__ import annotations

import pytest

from middleware.deadletters import PENDING_RETRY_MS, DeadLetters
from tests.support.units import proxy
from worker_service.database import DeadLetter, init_database, migrate, session
from worker_service.outcome import PENDING_DEAD_LETTER, Dead


@pytest.fixture()
def sink(tmp_path):
    init_database(f"sqlite:///{tmp_path}/sink.db")
    migrate()
    return DeadLetters()


def test_the_row_keeps_the_final_error_the_payload_and_the_attempts(sink):
    message = proxy(
        "noop",
        kwargs={"tag": "t", "api_key": "s3cret"},
        retries=2,
        attempt_history=[{"attempt": 2, "error": "TransientError: 503"}],
    )
    try:
        raise RuntimeError("third time")
    except RuntimeError as exc:
        sink.record(message, Dead.of("retries_exhausted", exc))
    with session():
        row = DeadLetter.get()
    assert (row.message_id, row.error_type, row.exception_type, row.error_message, row.attempts) == (
        message.message_id,
        "retries_exhausted",
        "RuntimeError",
        "third time",
        3,
    )
    assert "third time" in row.traceback and row.kwargs["api_key"] == "s3cret"  # kept whole for requeue
    assert row.history == [{"attempt": 2, "error": "TransientError: 503"}]


def test_a_dead_letter_the_database_cannot_take_travels_with_its_message(sink):
    message = proxy("noop", retries=1)
    dead = Dead.of("crash_loop", RuntimeError("died 3 times"))
    successor = sink.pending_successor(message, dead)
    assert successor.delay_ms == PENDING_RETRY_MS
    assert successor.message.message_id == message.message_id
    assert Dead.from_option(successor.message.options[PENDING_DEAD_LETTER]) == dead
    # stored later, the marker is not part of the kept options
    sink.record(successor.message, dead)
    with session():
        assert PENDING_DEAD_LETTER not in DeadLetter.get().options


def test_a_forbidden_message_is_kept_cut_and_a_list_reads_no_payload(sink):
    """Regression (second probe): Kommo webhooks with a wrong token were stored whole (any size), and the
    failed-messages list loaded every payload: 50 forged 5 MB bodies took the dashboard to 340 MiB."""
    from worker_service.deadletters import ERROR_PREVIEW_CHARS, DeadLetterStore, Filter
    from worker_service.errors import Forbidden

    body = "leads%5Bstatus%5D%5B0%5D%5Bid%5D=1&" + "x" * 5_000_000
    sink.record(
        proxy("crm_handle_webhook", kwargs={"body": body, "token": "wrong"}),
        Dead.of("forbidden", Forbidden("webhook token does not match KOMMO_WEBHOOK_TOKEN")),
    )
    sink.record(
        proxy("noop", kwargs={"blob": "y" * 100_000}),
        Dead.of("retries_exhausted", RuntimeError("z" * 50_000)),
    )
    with session():
        forbidden, kept = DeadLetter.select().order_by(DeadLetter.id)
    assert len(forbidden.kwargs["body"]) < 3_000 and "5000035 characters, sha256" in forbidden.kwargs["body"]
    assert kept.kwargs["blob"] == "y" * 100_000  # any other dead letter keeps its payload whole, for requeue
    listed = DeadLetterStore(broker=None).list(Filter(state=None))
    assert [row.kwargs for row in listed] == [None, None]  # never read for a list
    assert len(listed[0].error_message) == ERROR_PREVIEW_CHARS
