"""worker_service.knowledge.graph: chunk keys (text, model, prompt version) and the cross-chunk merge."""

from __future__ import annotations

from worker_service.knowledge.graph import PROMPT_VERSION, Extraction, Graph, chunk_key, chunk_text


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
