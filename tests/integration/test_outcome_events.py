"""Outcome events end to end: written with the status, delivered signed, at least once, in order per asset, to a
real receiver."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_contracts import Sender

from tests.support.helpers import db_query, wait_for
from tests.support.receiver import EventReceiver

SECRET = "events-secret"


@pytest.fixture()
def receiver() -> Iterator[EventReceiver]:
    server = EventReceiver(SECRET)
    yield server
    server.close()


@pytest.fixture()
def events_env(worker_env: dict[str, str], receiver: EventReceiver) -> dict[str, str]:
    return {**worker_env, "EVENTS_WEBHOOK_URL": receiver.url, "EVENTS_WEBHOOK_SECRET": SECRET}


def _rows(env: dict[str, str], sql: str) -> list[tuple]:
    import sqlite3

    try:
        return db_query(env, sql)
    except sqlite3.OperationalError:  # the worker has not created the schema yet
        return []


def _send_assets(env: dict[str, str], client, names: list[str]) -> None:
    sender = Sender(client)
    for name in names:
        if not name.startswith("missing"):
            Path(env["STORAGE_ROOT"], f"{name}.txt").write_text(f"text of {name}\n")
        sender.process_asset(name, f"file:{name}.txt")


def test_a_receiver_failing_for_10_s_gets_every_event_afterwards_signed_and_in_order(
    events_env, start_worker, redis_client, receiver
):
    receiver.status = 503
    start_worker(env=events_env, threads=4)
    names = [f"ev{i}" for i in range(5)] + ["missing-1"]
    _send_assets(events_env, redis_client, names)
    wait_for(lambda: receiver.refused > 0, 30, 0.2, "deliveries refused")
    time.sleep(10)  # the receiver's outage (the scenario), not a wait for a state
    assert receiver.events() == []
    receiver.status = 200
    # no OPENROUTER_API_KEY: each extracted asset's knowledge is skipped; the missing file fails the asset
    expected = {f"ev{i}": ["asset.extracted", "knowledge.skipped"] for i in range(5)} | {
        "missing-1": ["asset.failed"]
    }
    wait_for(lambda: len(receiver.events()) >= 11, 90, 0.3, "every event after the receiver recovered")
    got = receiver.events()
    per_asset: dict[str, list[str]] = {}
    for event in got:
        per_asset.setdefault(event["asset_id"], []).append(event["event"])
        assert event["_event_id_header"] == event["event_id"]
        assert set(event) - {"_event_id_header"} == {
            "event_id",
            "event",
            "asset_id",
            "status",
            "error_code",
            "occurred_at",
        }
    assert {a: list(dict.fromkeys(e)) for a, e in per_asset.items()} == expected  # in order per asset
    failed = next(e for e in got if e["event"] == "asset.failed")
    assert (failed["status"], failed["error_code"]) == ("failed", "fetch_failed")
    pending = db_query(events_env, "select count(*) from outbox_event where state = 'pending'")[0][0]
    assert pending == 0


def test_kill_9_between_the_status_and_its_delivery_loses_no_event(
    events_env, start_worker, redis_client, receiver
):
    receiver.status = 503  # the event is written with the status but cannot go out yet
    first = start_worker(env=events_env, threads=2)
    _send_assets(events_env, redis_client, ["k9"])
    wait_for(
        lambda: _rows(events_env, "select 1 from outbox_event where asset_id = 'k9' and attempts > 0"),
        60,
        0.2,
        "the event written and tried",
    )
    first.kill_tree()
    written = {r[0] for r in db_query(events_env, "select event_id from outbox_event where asset_id = 'k9'")}
    receiver.status = 200
    start_worker(env=events_env, threads=2)
    wait_for(
        lambda: {e["event_id"] for e in receiver.events()} >= written, 60, 0.3, "the events after the kill"
    )
    assert [e["event"] for e in receiver.events() if e["asset_id"] == "k9"][:1] == ["asset.extracted"]


def test_an_event_can_be_sent_again_and_keeps_its_id(events_env, start_worker, redis_client, receiver):
    from worker_service.database import init_database
    from worker_service.outcome_events import resend

    start_worker(env=events_env, threads=2)
    _send_assets(events_env, redis_client, ["again"])
    wait_for(lambda: len(receiver.events()) >= 2, 60, 0.3, "both events")
    init_database(events_env["DATABASE_URL"])
    first = receiver.events()[0]
    row = db_query(events_env, f"select id from outbox_event where event_id = '{first['event_id']}'")[0][0]
    assert resend([row], "test") == 1
    wait_for(lambda: len(receiver.events()) >= 3, 30, 0.3, "the event again")
    assert receiver.events()[-1]["event_id"] == first["event_id"]
    assert db_query(events_env, "select action, count from audit_entry")[-1] == ("event-resend", 1)


def test_without_a_webhook_url_no_event_is_recorded(worker_env, start_worker, redis_client):
    start_worker(env=worker_env, threads=2)
    _send_assets(worker_env, redis_client, ["quiet"])
    wait_for(
        lambda: _rows(worker_env, "select status from asset where asset_id = 'quiet'") == [("extracted",)],
        60,
        0.3,
        "extracted",
    )
    assert db_query(worker_env, "select count(*) from outbox_event") == [(0,)]
