"""CRM domain end to end: real workers against the fake Kommo, on real Redis."""

from __future__ import annotations

import json
import sqlite3
import time

import pytest
from worker_contracts import Sender

from tests.support.fake_kommo import WEBHOOK
from tests.support.helpers import run_cli, wait_for, wait_settled


def _dead(env: dict[str, str]) -> list[dict]:
    return json.loads(run_cli(env, "dlq", "list", "--json").stdout or "[]")


def _ledger(env: dict[str, str], kind: str, key: str) -> dict | None:
    result = run_cli(env, "crm", "link", kind, key)
    return json.loads(result.stdout) if result.returncode == 0 else None


def test_contacts_leads_and_notes_are_created_once_even_when_redelivered(
    crm_env, start_worker, redis_client, kommo
):
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
    wait_settled(redis_client, "crm")  # the duplicates have run too
    assert (
        len(kommo.store["contacts"]) == 1
        and len(kommo.store["leads"]) == 1
        and len(kommo.store["notes"]) == 1
    )
    lead = kommo.store["leads"][lead_id]
    assert lead["_embedded"]["contacts"] == [{"id": _ledger(crm_env, "contact", "u-1")["kommo_id"]}]
    assert _dead(crm_env) == []


def test_killing_the_worker_after_kommo_accepted_creates_no_duplicate_note(
    crm_env, start_worker, redis_client, kommo
):
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


@pytest.mark.alone
def test_burst_of_100_notes_gets_no_429(crm_env, start_worker, redis_client, kommo):
    # The fake stamps each request when its handler thread runs; on two busy cores that lags by tens of ms,
    # and at 0.95 x 7 req/s 50 ms of lag puts 8 stamps in one second (a 429 seen in CI runs).  The fleet is
    # held at 6.5 x 0.95 here: 134 ms of slack, the margin docs/operations.rst advises against network jitter;
    # and the test runs alone (`alone`): beside another test's workers, 134 ms was still not enough once in ~7 runs.
    start_worker(env={**crm_env, "KOMMO_RPS": "6.5"}, processes=2, threads=8)
    sender = Sender(redis_client)
    for i in range(100):
        sender.crm_add_note("leads", 1, f"note {i}", f"burst-{i}")
    wait_for(lambda: len(kommo.store["notes"]) == 100, 120, 0.5, "100 notes")
    statuses = [r[3] for r in kommo.api_requests()]
    assert 429 not in statuses and 403 not in statuses
    assert len(kommo.store["notes"]) == 100


def test_two_workers_refreshing_at_once_spend_one_refresh_token(crm_env, start_worker, redis_client, kommo):
    env = {k: v for k, v in crm_env.items() if k != "KOMMO_ACCESS_TOKEN"}
    env.update(
        {
            "KOMMO_CLIENT_ID": "cid",
            "KOMMO_CLIENT_SECRET": "secret",
            "KOMMO_REDIRECT_URI": "https://x/cb",
            "KOMMO_REFRESH_TOKEN": "rt-0",
        }
    )
    assert run_cli(env, "migrate").returncode == 0
    with sqlite3.connect(env["DATABASE_URL"].removeprefix("sqlite:///")) as conn:
        conn.execute(
            "insert into kommo_token (id, access_token, refresh_token, updated_at) "
            "values (1, 'at-expired', 'rt-0', '2026-01-01')"
        )
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


def test_webhook_with_a_wrong_token_is_refused_and_a_right_one_produces_its_event(
    crm_env, start_worker, redis_client
):
    start_worker(env=crm_env)
    sender = Sender(redis_client)
    sender.crm_handle_webhook(WEBHOOK, "wrong")
    rows = wait_for(lambda: _dead(crm_env), 30, 0.3, "a dead letter")
    assert rows[0]["error_type"] == "forbidden" and rows[0]["attempts"] == 1
    detail = json.loads(run_cli(crm_env, "dlq", "show", str(rows[0]["id"]), "--json").stdout)
    assert detail["kwargs"]["token"] == "***"  # the secret is masked
    sender.crm_handle_webhook(WEBHOOK, "hook-secret")
    sender.crm_handle_webhook(WEBHOOK, "hook-secret")  # a redelivered webhook adds nothing
    link = wait_for(
        lambda: (
            json.loads(r.stdout)
            if (r := run_cli(crm_env, "crm", "link", "lead", "10701093", "--by-kommo-id")).returncode == 0
            else None
        ),
        30,
        0.3,
        "the lead link",
    )
    assert (link["status_id"], link["pipeline_id"], link["price"]) == (142, 555, 22500)
    wait_settled(redis_client, "crm")  # the redelivered webhook has run too
    events = json.loads(run_cli(crm_env, "crm", "events").stdout)
    assert sorted((e["entity"], e["action"]) for e in events) == [("contacts", "update"), ("leads", "status")]


def _webhook_status(lead_id: int, status_id: int, updated_at: int | str, price: str = "100") -> str:
    from urllib.parse import urlencode

    return urlencode(
        {
            "account[id]": "29085955",
            "leads[status][0][id]": str(lead_id),
            "leads[status][0][status_id]": str(status_id),
            "leads[status][0][pipeline_id]": "555",
            "leads[status][0][price]": price,
            "leads[status][0][updated_at]": str(updated_at),
        }
    )


def test_an_upsert_merges_into_what_sales_staff_added_by_hand(crm_env, start_worker, redis_client, kommo):
    """Kommo's PATCH replaces a listed field's values and the tag list: sending only ours erased the rest."""
    start_worker(env=crm_env, threads=2)
    sender = Sender(redis_client)
    sender.crm_upsert_contact("u-9", "Ann Example", emails=["ann@example.com"])
    wait_for(lambda: _ledger(crm_env, "contact", "u-9"), 30, 0.3, "contact created")
    contact = next(iter(kommo.store["contacts"].values()))
    # meanwhile, by hand in Kommo: a tag, a second e-mail, a phone
    contact["_embedded"]["tags"].append({"name": "VIP"})
    contact["custom_fields_values"][0]["values"].append(
        {"value": "ann.private@example.com", "enum_code": "PRIV"}
    )
    contact["custom_fields_values"].append({"field_code": "PHONE", "values": [{"value": "+7 900 111-22-33"}]})
    sender.crm_upsert_contact("u-9", "Ann Example", emails=["ann@example.com", "ann@work.example"])
    wait_for(
        lambda: any(
            v["value"] == "ann@work.example" for f in contact["custom_fields_values"] for v in f["values"]
        ),
        30,
        0.3,
        "the second upsert applied",
    )
    tags = {t["name"] for t in contact["_embedded"]["tags"]}
    emails = [
        v["value"] for f in contact["custom_fields_values"] if f["field_code"] == "EMAIL" for v in f["values"]
    ]
    phones = [
        v["value"] for f in contact["custom_fields_values"] if f["field_code"] == "PHONE" for v in f["values"]
    ]
    assert tags == {"ext:u-9", "VIP"}
    assert emails == ["ann@example.com", "ann.private@example.com", "ann@work.example"]
    assert phones == ["+7 900 111-22-33"]
    assert len(kommo.store["contacts"]) == 1 and _dead(crm_env) == []


def test_a_contact_created_by_an_attempt_whose_answer_was_lost_is_found_by_name_not_by_tag_search(
    crm_env, start_worker, redis_client, kommo
):
    kommo.store["contacts"][1] = {
        "id": 1,
        "name": "Ann Example",
        "_embedded": {"tags": [{"name": "ext:u-7"}]},
    }
    start_worker(env=crm_env, threads=2)
    Sender(redis_client).crm_upsert_contact("u-7", "Ann Example", phones=["+7 900 000-00-07"])
    wait_for(lambda: _ledger(crm_env, "contact", "u-7"), 30, 0.3, "contact synced")
    assert _ledger(crm_env, "contact", "u-7")["kommo_id"] == 1 and len(kommo.store["contacts"]) == 1


def test_a_lead_whose_creation_answer_never_came_exists_once_after_the_retry(
    crm_env, start_worker, redis_client, kommo
):
    kommo.drop_after_create = 1  # Kommo stores the lead, then the connection drops before the answer
    start_worker(env=crm_env, threads=2)
    Sender(redis_client).crm_create_lead("l-drop", "Dropped deal", price=10)
    wait_for(lambda: _ledger(crm_env, "lead", "l-drop"), 30, 0.3, "lead synced after the retry")
    assert len(kommo.store["leads"]) == 1
    assert _ledger(crm_env, "lead", "l-drop")["kommo_id"] == next(iter(kommo.store["leads"]))
    posts = [r for r in kommo.api_requests() if r[1] == "POST" and r[2] == "/api/v4/leads"]
    assert len(posts) == 1 and _dead(crm_env) == []


def test_rejected_credentials_pause_the_fleet_and_every_note_arrives_once_afterwards(
    crm_env, start_worker, redis_client, kommo
):
    env = {**crm_env, "KOMMO_AUTH_PAUSE_SECONDS": "3"}
    kommo.unauthorized_until = time.monotonic() + 20  # the long-lived token is refused for 20 s
    worker = start_worker(env=env, threads=4)
    sender = Sender(redis_client)
    for i in range(10):
        sender.crm_add_note("leads", 1, f"note {i}", f"auth-{i}")
    wait_for(
        lambda: (redis_client.get("dramatiq:__pause__.kommo") or b"").startswith(b"401"),
        30,
        0.2,
        "the credentials pause",
    )
    assert _dead(env) == []
    wait_for(lambda: len(kommo.store["notes"]) == 10, 90, 0.5, "all ten notes after the token works again")
    wait_settled(redis_client, "crm")
    texts = sorted(n["params"]["text"].split("\n")[0] for n in kommo.store["notes"].values())
    assert texts == sorted(f"note {i}" for i in range(10)) and _dead(env) == []
    critical = [r for r in worker.logs() if r["level"] == "CRITICAL"]
    assert len(critical) == 1 and "rejected the long-lived token" in critical[0]["message"]


def test_a_403_for_missing_rights_is_dead_lettered_with_kommos_detail_and_pauses_nothing(
    crm_env, start_worker, redis_client, kommo
):
    kommo.forbidden_detail = "User does not have rights to add notes"
    start_worker(env=crm_env)
    Sender(redis_client).crm_add_note("leads", 1, "hello", "rights-1")
    rows = wait_for(lambda: _dead(crm_env), 30, 0.3, "a dead letter")
    assert rows[0]["error_type"] == "permanent_error" and "does not have rights" in rows[0]["error_message"]
    assert redis_client.get("dramatiq:__pause__.kommo") is None


def test_webhooks_out_of_order_never_move_the_ledger_backwards_and_blank_numbers_are_tolerated(
    crm_env, start_worker, redis_client
):
    start_worker(env=crm_env, threads=1)
    sender = Sender(redis_client)
    sender.crm_handle_webhook(
        _webhook_status(5001, 143, 2_000, price=""), "hook-secret"
    )  # newest, blank price
    sender.crm_handle_webhook(_webhook_status(5001, 142, 1_000), "hook-secret")  # older, arrives later
    sender.crm_handle_webhook(_webhook_status(5001, 20067736, 1_500, price="22 500"), "hook-secret")

    def link() -> dict | None:
        result = run_cli(crm_env, "crm", "link", "lead", "5001", "--by-kommo-id")
        return json.loads(result.stdout) if result.returncode == 0 else None

    wait_for(lambda: len(json.loads(run_cli(crm_env, "crm", "events").stdout)) == 3, 30, 0.3, "three events")
    assert (link()["status_id"], link()["status_changed_at"]) == (143, 2_000)
    sender.crm_handle_webhook(_webhook_status(5001, 142, 3_000, price="abc"), "hook-secret")  # a newer one
    wait_for(lambda: link()["status_id"] == 142, 30, 0.3, "the newest status")
    assert _dead(crm_env) == []
    purged = run_cli(crm_env, "crm", "purge", "--older-than", "0")
    assert purged.returncode == 0 and "purged 4 webhook event(s)" in purged.stdout
    assert json.loads(run_cli(crm_env, "crm", "events").stdout) == []
