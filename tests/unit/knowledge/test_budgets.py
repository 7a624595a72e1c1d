"""worker_service.knowledge.budgets: the per-asset caps (chunks, USD) let at most one call go over."""

from __future__ import annotations

import pytest

from worker_service.knowledge.budgets import AssetBudget, BudgetExceeded


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
