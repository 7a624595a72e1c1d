"""The TypeScript package's generated contracts match the pydantic models (one source of truth): regenerated
in memory and compared with the file in the repository."""

from __future__ import annotations

import importlib.util
from types import ModuleType

import pytest

from tests.support.helpers import ROOT

GENERATOR = ROOT / "worker-contracts" / "typescript" / "scripts" / "generate.py"


@pytest.fixture()
def generate() -> ModuleType:
    spec = importlib.util.spec_from_file_location("generate", GENERATOR)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_generated_typescript_contracts_are_current(generate):
    assert generate.main(["--check"]) == 0, (
        "stale: run worker-contracts/typescript/scripts/generate.py and commit"
    )


def test_the_check_fails_when_a_model_changes(generate, monkeypatch):
    from worker_contracts import CONTRACTS
    from worker_contracts.payloads import Payload

    class ExtractKnowledge(Payload):
        asset_id: str
        priority: int | None = None  # a field added to the Python model only

    monkeypatch.setitem(CONTRACTS, "extract_knowledge", ("knowledge", ExtractKnowledge))
    assert generate.main(["--check"]) == 1
    assert "priority?: number | null;" in generate.render()
