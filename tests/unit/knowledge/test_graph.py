"""worker_service.knowledge.graph: chunk keys (text, model, prompt version) and chunking."""

from __future__ import annotations

from worker_service.knowledge.graph import (
    PROMPT_VERSION,
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
    changed = {
        prompt_version(graph.SYSTEM_PROMPT + ".", graph.SCHEMA, graph.REPAIR_PROMPT),
        prompt_version(graph.SYSTEM_PROMPT, schema, graph.REPAIR_PROMPT),
        prompt_version(graph.SYSTEM_PROMPT, graph.SCHEMA, graph.REPAIR_PROMPT + "."),
    }
    assert len(changed) == 3 and PROMPT_VERSION not in changed
    assert {chunk_key("m1", "Alice met Bob.", version) for version in changed}.isdisjoint(
        {chunk_key("m1", "Alice met Bob.")}
    )


def test_long_text_is_cut_into_overlapping_chunks():
    assert chunk_text("a " * 1000, 300, 50)[1].startswith("a")


def test_chunks_never_split_a_table_row():
    from worker_service.assets import markdown as md
    from worker_service.knowledge.graph import chunk_spans

    rows = [["Артикул", "Наименование", "Цена"]] + [
        [f"ЦНС-{i}", f"Насос номер {i}", f"{1000 + i}"] for i in range(60)
    ]
    text = md.join(
        [
            md.marker("page", 1),
            "# Прайс",
            md.table(rows[:30]),
            md.marker("page", 2),
            md.table(rows[30:]),
            md.marker("page", 3),
            "Итого: 60 позиций.",
        ]
    )
    spans = chunk_spans(text, 400, 80)
    chunks = [text[s:e] for s, e in spans]
    table_rows = [line for line in text.splitlines() if line.startswith("| ЦНС-")]
    for row in table_rows:  # every row whole in at least one chunk, and never cut at a chunk's edge
        assert any(row in chunk.splitlines() for chunk in chunks), row
    for chunk in chunks:
        for line in chunk.strip().splitlines():
            assert not line.startswith("| ") or line.endswith(" |"), line
