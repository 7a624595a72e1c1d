"""Spending caps, chunk keys and OpenRouter's error codes (unit; the daily budget against real Redis)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from worker_service.knowledge.budgets import AssetBudget, BudgetExceeded, DailyBudget
from worker_service.knowledge.graph import PROMPT_VERSION, chunk_key
from worker_service.knowledge.openrouter import error_status
from worker_service.ratelimit import Limit, RateLimited, RateLimiter


def test_a_chunk_key_is_its_text_model_and_prompt_version():
    assert chunk_key("m1", "Alice met Bob.") == chunk_key("m1", "Alice met Bob.")
    assert chunk_key("m1", "Alice met Bob.") != chunk_key("m2", "Alice met Bob.")  # another model: not reused
    assert chunk_key("m1", "Alice met Bob.") != chunk_key("m1", "Alice met Carol.")
    assert len(PROMPT_VERSION) == 16


def test_changing_the_prompt_changes_every_key(monkeypatch):
    import hashlib

    import worker_service.knowledge.graph as graph

    before = chunk_key("m1", "Alice met Bob.")
    monkeypatch.setattr(graph, "PROMPT_VERSION", hashlib.sha256(b"another prompt").hexdigest()[:16])
    assert graph.chunk_key("m1", "Alice met Bob.") != before


@pytest.mark.parametrize(("error", "status"), [
    ({"code": 429, "message": "x"}, 429),
    ({"code": "503"}, 503),
    ({"code": "rate_limit_exceeded"}, 429),
    ({"code": "Payment_Required"}, 402),
    ({"code": "provider_overloaded"}, 503),
    ({"code": "weird", "metadata": {"error_type": "permission_denied"}}, 403),
    ({"code": "something new"}, 599),  # unknown: the caller's default (a server-side failure, retried)
    ({"code": None}, 599),
    ({"code": True}, 599),
    ("not an object", 599),
])
def test_error_codes_that_are_not_integers_are_read_by_their_meaning(error, status):
    assert error_status(error, default=599) == status


def test_asset_budget_lets_at_most_one_call_go_over_the_cost_cap():
    budget = AssetBudget(max_chunks=200, max_cost_usd=0.05)
    calls = 0
    with pytest.raises(BudgetExceeded) as raised:
        while True:
            budget.check_call()
            calls += 1
            budget.spend(0.01)
    assert calls <= 6 and raised.value.error_code == "budget_exceeded"
    with pytest.raises(BudgetExceeded):
        AssetBudget(max_chunks=3, max_cost_usd=1.0).check_chunks(4)
    AssetBudget(max_chunks=3, max_cost_usd=1.0).check_chunks(3)
    resumed = AssetBudget(max_chunks=200, max_cost_usd=0.05, spent_usd=0.05)  # earlier deliveries paid it all
    with pytest.raises(BudgetExceeded):
        resumed.check_call()


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
        assert raised.value.paused and raised.value.charges_window is False and not raised.value.spends_attempt
    assert 7_100_000 < limiter.paused_for("openrouter") <= 7_200_000  # two hours to 00:00 UTC (real clock aside)
    assert limiter.pause_reason("openrouter").startswith("daily_budget: spent $0.0300")
    assert sum(r.levelname == "CRITICAL" for r in caplog.records) == 1
    tomorrow = datetime(2026, 12, 2, 0, 0, 1, tzinfo=UTC)
    assert daily.spent_today(tomorrow) == 0.0  # a new day, a new budget
    assert DailyBudget(redis_client, limiter, "openrouter", None, namespace="wtest-budget").check(now) is None
