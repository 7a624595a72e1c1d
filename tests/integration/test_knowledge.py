"""Knowledge domain end to end: real workers, the fake OpenRouter, real Redis."""

from __future__ import annotations

import json
import sqlite3

import pytest

from tests.support.helpers import run_cli, wait_for
from tests.support.knowledge import asset_record, document, graph_rows, send_document


def test_multi_chunk_document_yields_a_merged_graph_without_duplicates(
    knowledge_env, start_worker, redis_client, fake
):
    from tests.support.fake_kommo import FakeKommo

    kommo = FakeKommo()
    start_worker(
        env={**knowledge_env, "KOMMO_BASE_URL": kommo.base_url, "KOMMO_ACCESS_TOKEN": "llt-1"}, threads=4
    )
    send_document(knowledge_env, redis_client, "kg1", crm_lead_id=4242)
    wait_for(
        lambda: asset_record(knowledge_env, "kg1").get("knowledge_status") == "done",
        60,
        0.5,
        "knowledge done",
    )
    entities, relations, usage = graph_rows(knowledge_env, "kg1")
    chunks = len([r for r in fake.chat_requests()])
    assert chunks >= 5  # multi-chunk
    names = [e[0] for e in entities]
    assert len(names) == len(set(names)) and {"Alice", "Bob", "Paris", "Acme", "Zenith", "Carol"} <= set(
        names
    )
    assert dict((e[0], e[2]) for e in entities)["Alice"] >= chunks  # merged across chunks
    alice_bob = [r for r in relations if r[0] == "Alice" and r[1] == "Bob"]
    assert (
        len(alice_bob) == 1 and alice_bob[0][3] >= chunks - 2 > 1
    )  # weights summed (a chunk may start mid-sentence)
    assert usage[0] == chunks and usage[1] > 0 and usage[3] == pytest.approx(0.0001 * chunks)
    headers = fake.chat_requests()[0]["headers"]
    assert headers["Authorization"] == f"Bearer {fake.key}" and headers["X-OpenRouter-Title"]
    assert fake.chat_requests()[0]["body"]["response_format"]["type"] == "json_schema"
    # the CRM note follows, on the asset's lead, once per content version
    wait_for(lambda: kommo.store["notes"], 30, 0.3, "the CRM note")
    note = next(iter(kommo.store["notes"].values()))
    assert note["entity_id"] == 4242 and note["entity_type"] == "leads"
    assert "Knowledge graph:" in note["params"]["text"] and "Alice" in note["params"]["text"]
    kommo.close()


def test_rate_limited_429_storm_and_402_pause_dead_letter_nothing(
    knowledge_env, start_worker, redis_client, fake
):
    """A 429 pauses OpenRouter for its Retry-After and a 402 for OPENROUTER_PAYMENT_PAUSE_SECONDS (3 s here),
    for the whole fleet, with one CRITICAL line, and neither spends an attempt; a 500 is an ordinary retry."""
    fake.script.extend(["429"] * 4 + ["402"] + ["500"])
    worker = start_worker(env=knowledge_env, processes=2, threads=4)
    send_document(knowledge_env, redis_client, "kg2")
    wait_for(
        lambda: asset_record(knowledge_env, "kg2").get("knowledge_status") == "done",
        90,
        0.5,
        "knowledge done",
    )
    requests_ = fake.chat_requests()
    assert [r["mode"] for r in requests_[:6]] == ["429"] * 4 + ["402", "500"]
    gaps = [later["at"] - earlier["at"] for earlier, later in zip(requests_, requests_[1:6], strict=False)]
    assert all(gap >= 0.9 for gap in gaps[:4]), gaps  # each 429's Retry-After: 1 s, held by every process
    assert gaps[4] >= 2.9, gaps  # the 402's pause: 3 s, not a retry's 100 ms backoff
    critical = [line for line in worker.logs() if line["level"] == "CRITICAL"]
    assert len(critical) == 1 and critical[0].get("alert") == "openrouter_credits_exhausted", critical
    assert run_cli(knowledge_env, "dlq", "list", "--json").stdout.strip() == "[]"
    record = asset_record(knowledge_env, "kg2")
    assert record["knowledge_error_code"] is None
    assert record["knowledge_attempts"] == 2  # the 500's attempt and the one that succeeded; waits spend none


@pytest.mark.alone
def test_two_processes_never_exceed_the_configured_rate(knowledge_env, start_worker, redis_client, fake):
    """Two processes of eight threads each, ten documents of their own text (nothing cached): far more than
    20 requests a second if each process paced itself; the fleet-wide limit keeps them under it, measured at
    the fake, which answers 429 above 20 in any second."""
    fake.rate_limit = 20
    # 18.5 x 0.95 req/s: slack for the lag of the fake's own timestamps on busy cores (see test_crm's burst test)
    start_worker(
        env={**knowledge_env, "OPENROUTER_BURST": "1", "OPENROUTER_RPS": "18.5"}, processes=2, threads=8
    )
    names = [f"kr{i}" for i in range(10)]
    for name in names:
        send_document(knowledge_env, redis_client, name, document(name))
    wait_for(
        lambda: all(asset_record(knowledge_env, n).get("knowledge_status") == "done" for n in names),
        120,
        0.5,
        "ten graphs",
    )
    seen = fake.chat_requests()
    assert len(seen) >= 60  # enough load for a missing fleet-wide limit to show
    assert [r for r in seen if r["over_rate"]] == []
    arrivals = sorted(r["at"] for r in seen)
    busiest = max(sum(1 for a in arrivals if start <= a < start + 1.0) for start in arrivals)
    assert busiest <= 20, busiest
    assert len(seen) / (arrivals[-1] - arrivals[0]) <= 18.5 * 1.05  # the average rate, at the fake


def test_malformed_output_is_repaired_once_then_fails_with_its_code(
    knowledge_env, start_worker, redis_client, fake
):
    start_worker(env=knowledge_env, threads=2)
    fake.script.append("malformed")  # the first answer is garbage, the repair succeeds
    send_document(knowledge_env, redis_client, "kg3")
    wait_for(
        lambda: asset_record(knowledge_env, "kg3").get("knowledge_status") == "done", 60, 0.5, "repaired"
    )
    repair = [r for r in fake.chat_requests() if len(r["body"]["messages"]) == 4]
    assert len(repair) == 1 and "invalid" in repair[0]["body"]["messages"][3]["content"]
    fake.mode = "malformed"
    send_document(knowledge_env, redis_client, "kg4", document("kg4"))  # new text: nothing cached
    wait_for(
        lambda: asset_record(knowledge_env, "kg4").get("knowledge_status") == "failed", 60, 0.5, "failed"
    )
    record = asset_record(knowledge_env, "kg4")
    assert record["knowledge_error_code"] == "invalid_llm_output"
    rows = json.loads(run_cli(knowledge_env, "dlq", "list", "--json").stdout)
    assert [(r["actor"], r["attempts"]) for r in rows] == [("extract_knowledge", 1)]


def test_error_inside_a_200_is_an_error(knowledge_env, start_worker, redis_client, fake):
    """An HTTP 200 whose choice carries an error is a failed call: retried as the same request, never sent to
    the repair step (which is for output that is not valid JSON), and nothing of it stored."""
    fake.script.append("error200")
    start_worker(env=knowledge_env, threads=2)
    send_document(knowledge_env, redis_client, "kg5")
    wait_for(
        lambda: asset_record(knowledge_env, "kg5").get("knowledge_status") == "done",
        60,
        0.5,
        "done after retry",
    )
    requests_ = fake.chat_requests()
    assert requests_[0]["mode"] == "error200"
    assert [len(r["body"]["messages"]) for r in requests_] == [2] * len(requests_)  # no repair request, ever
    first_chunk = fake.chunk_of(requests_[0]["body"]["messages"][-1]["content"])
    again = [r for r in requests_[1:] if fake.chunk_of(r["body"]["messages"][-1]["content"]) == first_chunk]
    assert len(again) == 1 and again[0]["mode"] == "ok"  # the same chunk asked again
    record = asset_record(knowledge_env, "kg5")
    assert record["knowledge_status"] == "done" and record["knowledge_attempts"] == 2
    path = knowledge_env["DATABASE_URL"].removeprefix("sqlite:///")
    with sqlite3.connect(path, timeout=30) as conn:
        stored = conn.execute("select valid, result from llm_chunk").fetchall()
    assert stored and all(valid for valid, _ in stored)  # every stored chunk is a real extraction
    assert not any("Provider returned error" in result for _, result in stored)
    entities, _relations, _usage = graph_rows(knowledge_env, "kg5")
    assert {name for name, _type, _mentions in entities} >= {"Alice", "Bob"}


def test_no_key_means_skipped_and_no_graph_and_a_skip_is_not_an_error(worker_env, start_worker, redis_client):
    """Regression: every skipped asset logged `Failed to process message ... with unhandled exception` at ERROR
    with a traceback."""
    worker = start_worker()
    for name in ("kg6", "kg7"):
        send_document(worker_env, redis_client, name)
    for name in ("kg6", "kg7"):
        wait_for(
            lambda: asset_record(worker_env, name).get("knowledge_status") == "skipped",  # noqa: B023
            60,
            0.5,
            "skipped",
        )
    record = asset_record(worker_env, "kg6")
    assert "OPENROUTER_API_KEY" in record["knowledge_error_message"]
    assert graph_rows(worker_env, "kg6")[0] == []
    worker.stop()
    lines = worker.logs()
    assert [line for line in lines if line["level"] in ("ERROR", "CRITICAL")] == []
    assert not any("Traceback" in line.get("exc_info", "") for line in lines)
    assert sum("OPENROUTER_API_KEY is not set" in line["message"] for line in lines) == 1  # said once
