"""CRM domain end to end: real workers against the fake Kommo, on real Redis."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator

import pytest

from actors.crm.webhooks import events_of, parse_form
from contracts import Sender
from tests.support.fake_kommo import FakeKommo
from tests.support.helpers import run_cli, wait_for

WEBHOOK = ("account%5Bid%5D=29085955&account%5Bsubdomain%5D=example&leads%5Bstatus%5D%5B0%5D%5Bid%5D=10701093"
           "&leads%5Bstatus%5D%5B0%5D%5Bstatus_id%5D=142&leads%5Bstatus%5D%5B0%5D%5Bold_status_id%5D=20067736"
           "&leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D=555&leads%5Bstatus%5D%5B0%5D%5Bprice%5D=22500"
           "&contacts%5Bupdate%5D%5B0%5D%5Bid%5D=77&contacts%5Bupdate%5D%5B0%5D%5Bname%5D=Ann")


@pytest.fixture()
def kommo() -> Iterator[FakeKommo]:
    fake = FakeKommo()
    yield fake
    fake.close()


@pytest.fixture()
def crm_env(worker_env: dict[str, str], kommo: FakeKommo) -> dict[str, str]:
    return {**worker_env, "KOMMO_BASE_URL": kommo.base_url, "KOMMO_ACCESS_TOKEN": "llt-1",
            "KOMMO_WEBHOOK_TOKEN": "hook-secret", "KOMMO_RPS": "7", "KOMMO_BURST": "1"}


def _dead(env: dict[str, str]) -> list[dict]:
    return json.loads(run_cli(env, "dlq", "list", "--json").stdout or "[]")


def _ledger(env: dict[str, str], kind: str, key: str) -> dict | None:
    result = run_cli(env, "crm", "link", kind, key)
    return json.loads(result.stdout) if result.returncode == 0 else None


def test_webhook_form_body_parses_into_typed_events():
    events = events_of(parse_form(WEBHOOK))
    assert [(e, a) for e, a, _ in events] == [("leads", "status"), ("contacts", "update")]
    lead = events[0][2]
    assert (lead.id, lead.status_id, lead.old_status_id, lead.pipeline_id, lead.price) == (10701093, 142, 20067736,
                                                                                          555, 22500)


def test_contacts_leads_and_notes_are_created_once_even_when_redelivered(crm_env, start_worker, redis_client, kommo):
    start_worker(env=crm_env, threads=4)
    sender = Sender(redis_client)
    sender.crm_upsert_contact("u-1", "Ann Example", emails=["ann@example.com"], phones=["+7 900 000-00-00"])
    wait_for(lambda: _ledger(crm_env, "contact", "u-1"), 30, 0.3, "contact synced")
    sender.crm_upsert_contact("u-1", "Ann Example", emails=["ann@example.com"])  # a redelivery, in effect
    sender.crm_create_lead("l-1", "Deal", price=1000, contact_external_id="u-1")
    sender.crm_create_lead("l-1", "Deal", price=1000, contact_external_id="u-1")
    wait_for(lambda: _ledger(crm_env, "lead", "l-1"), 30, 0.3, "lead synced")
    lead_id = _ledger(crm_env, "lead", "l-1")["kommo_id"]
    sender.crm_add_note("leads", lead_id, "first note", "note-1")
    sender.crm_add_note("leads", lead_id, "first note", "note-1")
    wait_for(lambda: _ledger(crm_env, "note", "note-1"), 30, 0.3, "note synced")
    time.sleep(1.5)
    assert len(kommo.store["contacts"]) == 1 and len(kommo.store["leads"]) == 1 and len(kommo.store["notes"]) == 1
    lead = kommo.store["leads"][lead_id]
    assert lead["_embedded"]["contacts"] == [{"id": _ledger(crm_env, "contact", "u-1")["kommo_id"]}]
    assert _dead(crm_env) == []


def test_killing_the_worker_after_kommo_accepted_creates_no_duplicate_note(crm_env, start_worker, redis_client,
                                                                          kommo):
    env = {**crm_env, "HEARTBEAT_TIMEOUT_MS": "1500", "MAINTENANCE_INTERVAL_MS": "300"}
    kommo.hang_after_create = 60
    first = start_worker(env=env, threads=1)
    Sender(redis_client).crm_add_note("contacts", 5, "hello", "idem-kill")
    wait_for(lambda: len(kommo.store["notes"]) == 1, 30, 0.1, "Kommo accepted the note")
    first.kill_tree()  # after Kommo's acceptance, before the worker saw the answer (and before the ack)
    kommo.hang_after_create = 0
    start_worker(env=env, threads=1)
    # redelivered within ~2 s; the dead worker's key lease (30 s) expires; the lookup finds the accepted note
    wait_for(lambda: _ledger(env, "note", "idem-kill"), 60, 0.5, "note recorded after redelivery")
    assert len(kommo.store["notes"]) == 1


def test_burst_of_100_notes_gets_no_429(crm_env, start_worker, redis_client, kommo):
    start_worker(env=crm_env, processes=2, threads=8)
    sender = Sender(redis_client)
    for i in range(100):
        sender.crm_add_note("leads", 1, f"note {i}", f"burst-{i}")
    wait_for(lambda: len(kommo.store["notes"]) == 100, 120, 0.5, "100 notes")
    statuses = [r[3] for r in kommo.api_requests()]
    assert 429 not in statuses and 403 not in statuses
    assert len(kommo.store["notes"]) == 100


def test_two_workers_refreshing_at_once_spend_one_refresh_token(crm_env, start_worker, redis_client, kommo):
    env = {k: v for k, v in crm_env.items() if k != "KOMMO_ACCESS_TOKEN"}
    env.update({"KOMMO_CLIENT_ID": "cid", "KOMMO_CLIENT_SECRET": "secret", "KOMMO_REDIRECT_URI": "https://x/cb",
                "KOMMO_REFRESH_TOKEN": "rt-0"})
    assert run_cli(env, "migrate").returncode == 0
    with sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///")) as conn:
        conn.execute("insert into kommo_token (id, access_token, refresh_token, updated_at) "
                     "values (1, 'at-expired', 'rt-0', '2026-01-01')")
    start_worker(env=env, processes=2, threads=4)
    sender = Sender(redis_client)
    for i in range(8):
        sender.crm_add_note("leads", 1, f"n{i}", f"oauth-{i}")
    wait_for(lambda: len(kommo.store["notes"]) == 8, 60, 0.3, "all notes")
    assert kommo.refreshes == ["rt-0"]  # one refresh, the single-use token spent once
    assert _dead(env) == []


def test_validation_error_is_dead_lettered_with_kommos_detail(crm_env, start_worker, redis_client):
    start_worker(env=crm_env)
    Sender(redis_client).crm_create_lead("bad-1", "Negative", price=-5)
    rows = wait_for(lambda: _dead(crm_env), 30, 0.3, "a dead letter")
    assert rows[0]["actor"] == "crm_create_lead" and rows[0]["error_type"] == "permanent_error"
    assert "greater than or equal to 0" in rows[0]["error_message"] and rows[0]["attempts"] == 1


def test_webhook_with_a_wrong_token_is_refused_and_a_right_one_produces_its_event(crm_env, start_worker,
                                                                                  redis_client):
    start_worker(env=crm_env)
    sender = Sender(redis_client)
    sender.crm_handle_webhook(WEBHOOK, "wrong")
    rows = wait_for(lambda: _dead(crm_env), 30, 0.3, "a dead letter")
    assert rows[0]["error_type"] == "forbidden" and rows[0]["attempts"] == 1
    detail = json.loads(run_cli(crm_env, "dlq", "show", str(rows[0]["id"]), "--json").stdout)
    assert detail["kwargs"]["token"] == "***"  # the secret is masked
    sender.crm_handle_webhook(WEBHOOK, "hook-secret")
    sender.crm_handle_webhook(WEBHOOK, "hook-secret")  # a redelivered webhook adds nothing
    link = wait_for(lambda: (json.loads(r.stdout) if (r := run_cli(crm_env, "crm", "link", "lead", "10701093",
                                                                       "--by-kommo-id")).returncode == 0 else None),
                    30, 0.3, "the lead link")
    assert (link["status_id"], link["pipeline_id"], link["price"]) == (142, 555, 22500)
    time.sleep(1)
    events = json.loads(run_cli(crm_env, "crm", "events").stdout)
    assert sorted((e["entity"], e["action"]) for e in events) == [("contacts", "update"), ("leads", "status")]
