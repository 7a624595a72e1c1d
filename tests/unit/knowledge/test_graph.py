"""worker_service.knowledge.graph: chunk keys (text, model, prompt version) and the cross-chunk merge."""

from __future__ import annotations

from worker_service.knowledge.graph import (
    PROMPT_VERSION,
    Extraction,
    Graph,
    chunk_key,
    chunk_text,
    prompt_version,
)


def test_a_chunk_key_is_its_text_model_and_prompt_version():
    assert chunk_key("m1", "Alice met Bob.") == chunk_key("m1", "Alice met Bob.")
    assert chunk_key("m1", "Alice met Bob.") != chunk_key("m2", "Alice met Bob.")  # another model: not reused
    assert chunk_key("m1", "Alice met Bob.") != chunk_key("m1", "Alice met Carol.")
    assert len(PROMPT_VERSION) == 16


def test_changing_the_prompt_changes_every_key():
    """The version is derived from what is sent (system prompt, schema, repair prompt), and is part of the key."""
    import copy

    from worker_service.knowledge import graph

    assert PROMPT_VERSION == prompt_version(graph.SYSTEM_PROMPT, graph.SCHEMA, graph.REPAIR_PROMPT)
    schema = copy.deepcopy(graph.SCHEMA)
    schema["properties"]["entities"]["description"] = "changed"
    changed = {prompt_version(graph.SYSTEM_PROMPT + ".", graph.SCHEMA, graph.REPAIR_PROMPT),
               prompt_version(graph.SYSTEM_PROMPT, schema, graph.REPAIR_PROMPT),
               prompt_version(graph.SYSTEM_PROMPT, graph.SCHEMA, graph.REPAIR_PROMPT + ".")}
    assert len(changed) == 3 and PROMPT_VERSION not in changed
    assert {chunk_key("m1", "Alice met Bob.", version) for version in changed} \
        .isdisjoint({chunk_key("m1", "Alice met Bob.")})


def test_merge_normalises_names_and_sums_weights():
    graph = Graph()
    graph.add(Extraction.model_validate({"entities": [{"name": "Alice ", "type": "person"}],
                                         "relations": [{"source": "alice", "target": "Bob", "type": "knows",
                                                        "weight": 2}]}))
    graph.add(Extraction.model_validate({"entities": [{"name": "ALICE", "type": "Person", "description": "x"}],
                                         "relations": [{"source": "Alice", "target": "bob", "type": "KNOWS",
                                                        "weight": 3}]}))
    assert len(graph.entities) == 2  # Alice (PERSON) and the placeholder for Bob
    assert [r.weight for r in graph.relations.values()] == [5]
    assert chunk_text("a " * 1000, 300, 50)[1].startswith("a")
