"""Outcome events: written with the status, delivered signed, at least once, in order per asset (integration:
real workers, a local receiver that fails for a while)."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from worker_contracts import Sender

from tests.support.helpers import db_query, wait_for
from tests.support.receiver import EventReceiver
from worker_service.outcome_events import encode, sign

SECRET = "events-secret"


@pytest.fixture()
def receiver() -> Iterator[EventReceiver]:
    server = EventReceiver(SECRET)
    yield server
    server.close()


@pytest.fixture()
def events_env(worker_env: dict[str, str], receiver: EventReceiver) -> dict[str, str]:
    return {**worker_env, "EVENTS_WEBHOOK_URL": receiver.url, "EVENTS_WEBHOOK_SECRET": SECRET}


def test_the_signature_is_the_hmac_of_the_raw_body_a_receiver_can_check():
    body = encode({"event_id": "e-1", "event": "asset.extracted", "asset_id": "a-1", "status": "extracted",
                   "error_code": None, "occurred_at": "2026-12-01T00:00:00Z"})
    assert sign(body, SECRET) == "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    assert json.loads(body)["error_code"] is None


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


def test_a_receiver_failing_for_10_s_gets_every_event_afterwards_signed_and_in_order(events_env, start_worker,
                                                                                     redis_client, receiver):
    receiver.status = 503
    start_worker(env=events_env, threads=4)
    names = [f"ev{i}" for i in range(5)] + ["missing-1"]
    _send_assets(events_env, redis_client, names)
    time.sleep(10)
    assert receiver.events() == [] and receiver.refused > 0
    receiver.status = 200
    # no OPENROUTER_API_KEY: each extracted asset's knowledge is skipped; the missing file fails the asset
    expected = {f"ev{i}": ["asset.extracted", "knowledge.skipped"] for i in range(5)} | {"missing-1": ["asset.failed"]}
    wait_for(lambda: len(receiver.events()) >= 11, 90, 0.3, "every event after the receiver recovered")
    got = receiver.events()
    per_asset: dict[str, list[str]] = {}
    for event in got:
        per_asset.setdefault(event["asset_id"], []).append(event["event"])
        assert event["_event_id_header"] == event["event_id"]
        assert set(event) - {"_event_id_header"} == {"event_id", "event", "asset_id", "status", "error_code",
                                                     "occurred_at"}
    assert {a: list(dict.fromkeys(e)) for a, e in per_asset.items()} == expected  # in order per asset
    failed = next(e for e in got if e["event"] == "asset.failed")
    assert (failed["status"], failed["error_code"]) == ("failed", "fetch_failed")
    pending = db_query(events_env, "select count(*) from outbox_event where state = 'pending'")[0][0]
    assert pending == 0


def test_kill_9_between_the_status_and_its_delivery_loses_no_event(events_env, start_worker, redis_client, receiver):
    receiver.status = 503  # the event is written with the status but cannot go out yet
    first = start_worker(env=events_env, threads=2)
    _send_assets(events_env, redis_client, ["k9"])
    wait_for(lambda: _rows(events_env, "select 1 from outbox_event where asset_id = 'k9' and attempts > 0"), 60, 0.2,
             "the event written and tried")
    first.kill_tree()
    written = {r[0] for r in db_query(events_env, "select event_id from outbox_event where asset_id = 'k9'")}
    receiver.status = 200
    start_worker(env=events_env, threads=2)
    wait_for(lambda: {e["event_id"] for e in receiver.events()} >= written, 60, 0.3, "the events after the kill")
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
    wait_for(lambda: _rows(worker_env, "select status from asset where asset_id = 'quiet'") == [("extracted",)],
             60, 0.3, "extracted")
    assert db_query(worker_env, "select count(*) from outbox_event") == [(0,)]


def _readme_block(after: str) -> str:
    """The literal block that follows the paragraph line ``after`` in README.rst."""
    from tests.support.helpers import ROOT

    lines = (ROOT / "README.rst").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.rstrip().endswith(after)) + 1
    block = []
    for line in lines[start:]:
        if line and not line.startswith("    "):
            break
        block.append(line[4:])
    return "\n".join(block).strip() + "\n"


def test_the_readme_receivers_accept_a_signed_event_and_refuse_a_changed_one(tmp_path):
    import shutil
    import subprocess

    body = encode({"event_id": "e-9", "event": "asset.failed", "asset_id": "a-9", "status": "failed",
                   "error_code": "corrupt", "occurred_at": "2026-12-01T00:00:00Z"})
    signature = sign(body, SECRET)
    namespace: dict = {}
    exec(_readme_block("Python (or ``worker_contracts.parse_event``)::"), namespace)  # noqa: S102 - our README
    assert namespace["outcome_event"](body, signature, SECRET)["error_code"] == "corrupt"
    with pytest.raises(PermissionError):
        namespace["outcome_event"](body.replace(b"corrupt", b"ok"), signature, SECRET)
    from worker_contracts import InvalidSignature, parse_event

    assert parse_event(body, signature, SECRET).event == "asset.failed"
    with pytest.raises(InvalidSignature):
        parse_event(body, "sha256=00", SECRET)
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the README's Node receiver was not run")
    (tmp_path / "receiver.mjs").write_text(_readme_block("Node::"))
    (tmp_path / "check.mjs").write_text(
        "import { outcomeEvent } from './receiver.mjs';\n"
        "const [body, sig, secret] = process.argv.slice(2);\n"
        "try { console.log(outcomeEvent(Buffer.from(body), sig, secret).asset_id); }"
        " catch (e) { console.log('refused'); }\n")
    ok = subprocess.run([node, "check.mjs", body.decode(), signature, SECRET], cwd=tmp_path, capture_output=True,
                        text=True, check=True)
    bad = subprocess.run([node, "check.mjs", body.decode().replace("corrupt", "ok"), signature, SECRET],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert (ok.stdout.strip(), bad.stdout.strip()) == ("a-9", "refused")
