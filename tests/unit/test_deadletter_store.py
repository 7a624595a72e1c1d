"""worker_service.deadletters at the scale of the list pages: keyset pages, exact counts from the tally the
database's triggers keep (capped counts with a time range)."""

from __future__ import annotations

from datetime import datetime

import pytest

from tests.support.migrations import check_the_dead_letter_tally, insert_dead_letters
from worker_service.database import init_database, migrate
from worker_service.deadletters import DeadLetterStore, Filter


@pytest.fixture()
def store(tmp_path) -> DeadLetterStore:
    init_database(f"sqlite:///{tmp_path}/dead.db")
    migrate()
    insert_dead_letters(250)
    return DeadLetterStore(broker=None)  # type: ignore[arg-type]


def test_keyset_pages_cover_every_row_once_newest_first(store):
    seen, before = [], None
    while True:
        page = store.list(Filter(), limit=40, before=before)
        if not page:
            break
        seen += [row.id for row in page]
        before = page[-1].id
    assert len(seen) == 225 and seen == sorted(seen, reverse=True) and len(set(seen)) == 225
    assert [r.id for r in store.list(Filter(), limit=40, offset=40)] == seen[
        40:80
    ]  # the old links still work


def test_counts_come_exact_from_the_tally_and_stop_past_the_cap_only_with_a_time_range(store):
    assert store.count(Filter()) == 225 and store.count(Filter(), cap=100) == 225
    assert store.counts_by("error_type", Filter(), cap=100) == {"crash_loop": 100, "permanent_error": 125}
    assert store.counts_by("error_type", Filter(error_type="crash_loop")) == {"crash_loop": 100}
    assert store.count(Filter(actor="a", queue="crm", error_type="permanent_error")) == 42  # i = 3 mod 6
    ranged = Filter(since=datetime(2000, 1, 1))
    assert store.count(ranged) == 225 and store.count(ranged, cap=100) == 101  # "more than 100"
    assert store.counts_by("error_type", ranged, cap=100) == {"crash_loop": 100, "permanent_error": 101}
    assert store.distinct("actor") == ["a", "b", "c"] and store.distinct("queue") == ["assets", "crm"]
    with pytest.raises(ValueError):
        store.distinct("error_message")


def test_the_tally_follows_every_write_and_an_upgrade_fills_it(tmp_path):
    check_the_dead_letter_tally(f"sqlite:///{tmp_path}/tally.db")


def test_requeue_matching_goes_in_batches_requeues_each_once_and_reports_progress(store, monkeypatch):
    import worker_service.deadletters as deadletters

    class Broker:
        def __init__(self) -> None:
            self.enqueued: list[str] = []

        def enqueue(self, message, *, delay=None):
            self.enqueued.append(message.message_id)
            return message

    monkeypatch.setattr(deadletters, "REQUEUE_BATCH", 40)
    store.broker = Broker()
    progress: list[int] = []
    done = store.requeue_matching(Filter(error_type="crash_loop"), "tester", progress=progress.append)
    assert len(done) == 100 and progress == [40, 80, 100]
    assert sorted(store.broker.enqueued) == sorted(f"m{i}" for i in range(250) if i % 2 == 0 and i % 10)
    assert store.requeue_matching(Filter(error_type="crash_loop"), "tester") == []  # each at most once
    assert store.count(Filter(error_type="crash_loop")) == 0
    assert store.count(Filter(state="requeued")) == 125


def test_a_requeue_asks_for_confirmation_only_when_the_service_judged_the_failure_permanent():
    """Whether a dead letter is hopeless as it stands comes from the type its failure got, not from a list of
    domain codes: fetch_failed after the retries ran out may work now; a corrupt file will not."""
    from worker_service.database.models import DeadLetter
    from worker_service.deadletters import to_public

    def permanent(error_type: str, code: str) -> bool:
        return to_public(
            DeadLetter(
                id=1,
                message_id="m",
                queue="assets",
                actor="process_asset",
                error_type=error_type,
                error_code=code,
                state="dead",
            )
        )["permanent"]

    assert permanent("permanent_error", "corrupt") and permanent("undecodable", "undecodable")
    assert not permanent("retries_exhausted", "fetch_failed") and not permanent("timeout", "timeout")
