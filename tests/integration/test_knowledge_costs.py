"""Knowledge never pays twice, within its budgets: real workers against the fake OpenRouter counting paid calls,
and the fleet's daily budget against real Redis."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime, timedelta

import pytest

from tests.support.helpers import run_cli, wait_for
from tests.support.knowledge import asset_record, document, graph_rows, send_document
from worker_service.knowledge.budgets import DailyBudget
from worker_service.knowledge.graph import chunk_text
from worker_service.ratelimit import Limit, RateLimited, RateLimiter


def test_the_daily_budget_pauses_the_fleet_until_midnight_utc_and_says_it_once(redis_client, caplog):
    limiter = RateLimiter(redis_client, {"openrouter": Limit(10)}, namespace="wtest-budget")
    daily = DailyBudget(redis_client, limiter, "openrouter", 0.03, namespace="wtest-budget")
    now = datetime(2026, 12, 1, 22, 0, tzinfo=UTC)
    for _ in range(3):
        daily.check(now)
        daily.spend(0.01, now)
    assert daily.spent_today(now) == pytest.approx(0.03)
    for _ in range(3):  # three threads of the fleet reach it
        with pytest.raises(RateLimited) as raised:
            daily.check(now)
        assert (
            raised.value.paused and raised.value.charges_window is False and not raised.value.spends_attempt
        )
    assert (
        7_100_000 < limiter.paused_for("openrouter") <= 7_200_000
    )  # two hours to 00:00 UTC (real clock aside)
    assert limiter.pause_reason("openrouter").startswith("daily_budget: spent $0.0300")
    assert sum(r.levelname == "CRITICAL" for r in caplog.records) == 1
    tomorrow = datetime(2026, 12, 2, 0, 0, 1, tzinfo=UTC)
    assert daily.spent_today(tomorrow) == 0.0  # a new day, a new budget
    assert DailyBudget(redis_client, limiter, "openrouter", None, namespace="wtest-budget").check(now) is None


def _chunks(text: str) -> int:
    return len(chunk_text(text, 800, 80))  # knowledge_env's KNOWLEDGE_CHUNK_CHARS / OVERLAP


def _knowledge(env: dict[str, str], asset_id: str) -> str | None:
    return asset_record(env, asset_id).get("knowledge_status")


def _dead_letters(env: dict[str, str]) -> list[dict]:
    return json.loads(run_cli(env, "dlq", "list", "--json").stdout)


def test_the_same_text_in_a_second_asset_costs_nothing(knowledge_env, start_worker, redis_client, fake):
    start_worker(env=knowledge_env, threads=2)
    text = document("same")
    send_document(knowledge_env, redis_client, "c1", text)
    wait_for(lambda: _knowledge(knowledge_env, "c1") == "done", 60, 0.3, "c1 done")
    paid = fake.paid_calls()
    assert paid == _chunks(text) and set(fake.paid_calls_by_chunk().values()) == {1}
    send_document(knowledge_env, redis_client, "c2", text)
    wait_for(lambda: _knowledge(knowledge_env, "c2") == "done", 60, 0.3, "c2 done")
    assert fake.paid_calls() == paid  # zero calls for the second asset
    first, second = graph_rows(knowledge_env, "c1"), graph_rows(knowledge_env, "c2")
    assert sorted(first[0]) == sorted(second[0]) and sorted(first[1]) == sorted(second[1])
    assert second[2][0] == 0 and second[2][3] == 0.0  # its usage: nothing paid
    assert asset_record(knowledge_env, "c2")["knowledge_chunks"] == _chunks(text)


def test_kill_9_mid_document_resumes_from_its_checkpoint(knowledge_env, start_worker, redis_client, fake):
    fake.mode, fake.slow_seconds = "slow", 0.4
    env = {**knowledge_env, "HEARTBEAT_TIMEOUT_MS": "3000"}  # the fresh worker recovers the message quickly
    text = document("kill", 120)
    chunks = _chunks(text)
    first = start_worker(env=env, threads=2)
    send_document(env, redis_client, "k1", text)
    wait_for(lambda: fake.paid_calls() >= chunks // 3, 60, 0.05, "a third of the chunks paid")
    first.kill_tree()
    paid_before_kill = fake.paid_calls()
    start_worker(env=env, threads=2)
    wait_for(lambda: _knowledge(env, "k1") == "done", 90, 0.5, "k1 done by the fresh worker")
    assert fake.paid_calls() <= chunks + 1  # at most the call in flight at the kill is paid again
    assert sum(1 for n in fake.paid_calls_by_chunk().values() if n > 1) <= 1
    assert len(fake.paid_calls_by_chunk()) == chunks
    print(f"\nkill -9 after {paid_before_kill} of {chunks} chunks: {fake.paid_calls()} paid calls in all")


def test_a_429_storm_and_a_5xx_burst_mid_document_pay_no_chunk_twice(
    knowledge_env, start_worker, redis_client, fake
):
    fake.script.extend(["ok"] * 3 + ["429"] * 3 + ["ok"] * 2 + ["500"] * 2 + ["ok"] + ["typed_error"])
    text = document("storm")
    start_worker(env=knowledge_env, threads=2)
    send_document(knowledge_env, redis_client, "s1", text)
    wait_for(lambda: _knowledge(knowledge_env, "s1") == "done", 90, 0.3, "s1 done")
    assert [r["status"] for r in fake.chat_requests()].count(429) >= 3
    paid = fake.paid_calls_by_chunk()
    assert len(paid) == _chunks(text) and set(paid.values()) == {1}
    assert _dead_letters(knowledge_env) == []


def test_budgets_per_asset_end_it_budget_exceeded_with_at_most_one_call_over(
    knowledge_env, start_worker, redis_client, fake
):
    fake.cost_per_call = 0.01
    env = {**knowledge_env, "KNOWLEDGE_MAX_COST_USD": "0.05", "KNOWLEDGE_MAX_CHUNKS": "10"}
    start_worker(env=env, threads=2)
    text = document("costly")
    assert 6 < _chunks(text) <= 10
    send_document(env, redis_client, "b1", text)
    wait_for(lambda: _knowledge(env, "b1") == "failed", 60, 0.3, "b1 over its cost cap")
    assert fake.paid_calls() <= 6
    record = asset_record(env, "b1")
    assert (
        record["knowledge_error_code"] == "budget_exceeded"
        and "KNOWLEDGE_MAX_COST_USD" in record["knowledge_error_message"]
    )
    paid = fake.paid_calls()
    long_text = document("long", 200)
    assert _chunks(long_text) > 10
    send_document(env, redis_client, "b2", long_text)
    wait_for(lambda: _knowledge(env, "b2") == "failed", 60, 0.3, "b2 over its chunk cap")
    assert fake.paid_calls() == paid  # refused before any call
    assert asset_record(env, "b2")["knowledge_error_code"] == "budget_exceeded"
    assert sorted(r["error_type"] for r in _dead_letters(env)) == ["permanent_error", "permanent_error"]


def test_the_daily_budget_pauses_openrouter_for_the_fleet_and_dead_letters_nothing(
    knowledge_env, start_worker, redis_client, fake
):
    from worker_service.web.metrics import BrokerCollector

    fake.cost_per_call = 0.01
    env = {**knowledge_env, "OPENROUTER_DAILY_BUDGET_USD": "0.03"}
    worker = start_worker(env=env, threads=2)
    for name in ("d1", "d2"):
        send_document(env, redis_client, name, document(name))

    def paused_reason() -> str:
        value = redis_client.get("dramatiq:__pause__.openrouter")
        return value.decode() if value else ""

    wait_for(lambda: paused_reason().startswith("daily_budget"), 60, 0.2, "the daily budget pause")
    time.sleep(2)  # whatever was in flight ends
    assert fake.paid_calls() <= 4  # 3 reach the cap; each of the 2 threads checks before its call
    now = datetime.now(UTC)
    to_midnight = (
        datetime(now.year, now.month, now.day, tzinfo=UTC) + timedelta(days=1) - now
    ).total_seconds()
    assert redis_client.pttl("dramatiq:__pause__.openrouter") / 1000 == pytest.approx(to_midnight, abs=15)
    assert {_knowledge(env, name) for name in ("d1", "d2")} <= {"pending", "processing", "retrying"}
    assert _dead_letters(env) == []
    critical = [r for r in worker.logs() if r["level"] == "CRITICAL"]
    assert len(critical) == 1 and "daily budget reached" in critical[0]["message"]
    gauges = {
        m.name: m.samples[0].value
        for m in BrokerCollector(None, spend_client=redis_client, daily_budget_usd=0.03).collect()
        if m.samples
    }
    assert gauges["worker_llm_spend_today_usd"] >= 0.03 and gauges["worker_llm_daily_budget_usd"] == 0.03


def test_a_chunk_still_invalid_after_its_repair_is_left_out_and_counted(
    knowledge_env, start_worker, redis_client, fake
):
    text = document("partial")
    fake.invalid_markers = ("Paragraph partial-30:",)
    start_worker(env=knowledge_env, threads=2)
    send_document(knowledge_env, redis_client, "p1", text)
    wait_for(lambda: _knowledge(knowledge_env, "p1") == "done", 60, 0.3, "p1 done")
    record = asset_record(knowledge_env, "p1")
    failed = record["knowledge_chunks_failed"]
    assert record["knowledge_chunks"] == _chunks(text) and failed in (
        1,
        2,
    )  # the overlap may repeat the marker
    entities = {e[0] for e in graph_rows(knowledge_env, "p1")[0]}
    assert {"Alice", "Bob", "Carol"} <= entities
    repairs = [r for r in fake.chat_requests() if r["repair"]]
    assert len(repairs) == failed  # one repair per invalid chunk, no more
    paid = fake.paid_calls()
    send_document(
        knowledge_env, redis_client, "p2", text
    )  # the same text again: the failed chunk is not re-paid
    wait_for(lambda: _knowledge(knowledge_env, "p2") == "done", 60, 0.3, "p2 done")
    assert (
        fake.paid_calls() == paid and asset_record(knowledge_env, "p2")["knowledge_chunks_failed"] == failed
    )


def test_a_long_document_yields_to_short_ones_and_pays_each_chunk_once(
    knowledge_env, start_worker, redis_client, fake
):
    fake.mode, fake.slow_seconds = "slow", 0.25
    env = {**knowledge_env, "KNOWLEDGE_TIME_LIMIT_SECONDS": "4"}  # a delivery yields after 2 s of work
    start_worker(env=env, threads=1)
    long_text = document("long", 300)  # 40 chunks: about 10 s of calls, five deliveries
    send_document(env, redis_client, "long", long_text)
    wait_for(lambda: fake.paid_calls() >= 2, 60, 0.1, "the long document started")
    for i in range(3):
        send_document(env, redis_client, f"short{i}", document(f"short{i}", 4))
    names = ["long", "short0", "short1", "short2"]
    wait_for(lambda: all(_knowledge(env, n) == "done" for n in names), 120, 0.5, "every document done")
    finished = {n: asset_record(env, n)["knowledge_finished_at"] for n in names}
    assert max(finished[f"short{i}"] for i in range(3)) < finished["long"]  # not starved behind it
    paid = fake.paid_calls_by_chunk()
    assert set(paid.values()) == {1} and len(paid) == _chunks(long_text) + 3
    assert _dead_letters(env) == []


def test_ten_documents_sharing_two_requests_per_second_all_finish_paying_each_chunk_once(
    knowledge_env, start_worker, redis_client, fake
):
    """The livelock this replaced: documents waiting for slots timed out, retried from chunk 0 and paid again."""
    env = {**knowledge_env, "OPENROUTER_RPS": "2", "OPENROUTER_BURST": "1"}
    fake.rate_limit = (
        3  # the fake answers 429 to a 4th request within a second: twice the pacing's 2/s, minus lag
    )
    start_worker(env=env, threads=16)
    texts = {f"f{i}": document(f"f{i}", 40) for i in range(10)}
    for name, text in texts.items():
        send_document(env, redis_client, name, text)
    wait_for(lambda: all(_knowledge(env, n) == "done" for n in texts), 150, 1.0, "all ten documents done")
    paid = fake.paid_calls_by_chunk()
    assert set(paid.values()) == {1} and len(paid) == sum(_chunks(t) for t in texts.values())
    assert _dead_letters(env) == []
    assert [r for r in fake.chat_requests() if r["over_rate"]] == []  # 16 threads never outran 2 requests/s


def test_knowledge_delivered_twice_at_once_pays_each_chunk_once(
    knowledge_env, start_worker, redis_client, fake
):
    """Regression (issue 44): a lost acknowledgement after a node kill ran one asset's knowledge twice at the same
    time; the generation fencing kept one status and one event, but both runs paid the LLM. A second delivery
    while the first is paying (its calls take 1 s each) now waits for the per-asset lease, without spending an
    attempt, and finds every chunk in the cache."""
    from worker_contracts import Sender

    fake.slow_seconds = 1.0
    fake.mode = "slow"
    text = document("twice", paragraphs=20)
    start_worker(env=knowledge_env, threads=4)
    send_document(knowledge_env, redis_client, "twice", text)
    wait_for(lambda: fake.chat_requests(), 60, 0.1, "the first delivery paying")
    Sender(redis_client).extract_knowledge("twice")  # a second delivery of the same work, at once
    wait_for(lambda: _knowledge(knowledge_env, "twice") == "done", 120, 0.3, "knowledge done")
    paid = fake.paid_calls_by_chunk()
    assert len(paid) == _chunks(text) and set(paid.values()) == {1}, paid  # every chunk paid exactly once
    assert _dead_letters(knowledge_env) == []
    assert asset_record(knowledge_env, "twice")["knowledge_attempts"] <= 2  # the wait spent no attempt
