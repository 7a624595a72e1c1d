from datetime import datetime, timedelta

import pytest

from worker_service.database import Asset, browse, init_database, migrate, session


@pytest.fixture()
def assets(tmp_path):
    init_database(f"sqlite:///{tmp_path}/browse.db")
    migrate()
    start = datetime(2026, 12, 1)
    with session():
        for i in range(25):
            Asset.create(
                asset_id=f"a{i:02}",
                status=("failed", "extracted")[i % 2],
                knowledge_status="done" if i % 2 else None,
                created_at=start + timedelta(seconds=i // 2),
            )


def test_counts_stop_past_the_cap_and_are_exact_below_it(assets):
    counts = browse.counts(browse.AssetQuery(), cap=10)
    assert counts["status"] == {"received": 0, "processing": 0, "retrying": 0, "extracted": 11, "failed": 11}
    exact = browse.counts(browse.AssetQuery())
    assert (exact["status"]["extracted"], exact["status"]["failed"], exact["knowledge_status"]["done"]) == (
        12,
        13,
        12,
    )


def test_pages_walk_every_record_once_even_when_creation_times_tie(assets):
    seen, cursor = [], None
    while True:
        rows, cursor = browse.page(browse.AssetQuery(), limit=4, cursor=cursor)
        seen += [r["asset_id"] for r in rows]
        if cursor is None:
            break
    assert seen == [f"a{i:02}" for i in reversed(range(25))]


@pytest.mark.parametrize("values", [{"status": "lost"}, {"knowledge_status": "x"}, {"since": "soon"}])
def test_a_filter_that_cannot_be_is_refused(values):
    with pytest.raises(browse.BadQuery):
        browse.AssetQuery.parse(values)


def test_a_forged_cursor_is_refused():
    with pytest.raises(browse.BadQuery):
        browse.decode_cursor("bm90IGpzb24")
