"""Entity resolution on the gold set (tests/gold/knowledge.json), through the real mentions, store and resolution
on SQLite: the quality bars of issue 39, the equality of any upload/re-upload/delete sequence with a build from
scratch, workspaces apart, and the four merge defects of the old per-asset merge."""

from __future__ import annotations

import random

import pytest

from tests.support.gold import DOCUMENTS, ingest, score, snapshot, text_and_spans
from worker_service.database import Asset, init_database, migrate, session
from worker_service.database.graph_models import KgAlias, KgEntity, KgMention
from worker_service.knowledge.graph import Entity, Extraction, Relation


@pytest.fixture()
def db(tmp_path):
    init_database(f"sqlite:///{tmp_path}/graph.db")
    migrate()


def _all(order: list[str] | None = None) -> dict[str, str]:
    assets = {}
    for doc_id in order or list(DOCUMENTS):
        ingest(f"asset-{doc_id}", DOCUMENTS[doc_id]["workspace"], DOCUMENTS[doc_id])
        assets[doc_id] = f"asset-{doc_id}"
    return assets


def test_the_gold_set_resolves_above_the_bars(db):
    result = score(_all())
    print(
        f"\npairwise P {result.pairwise_precision:.3f} R {result.pairwise_recall:.3f} F1 {result.pairwise_f1:.3f}; "
        f"B-cubed P {result.bcubed_precision:.3f} R {result.bcubed_recall:.3f}; over-merges {result.over_merges}; "
        f"under-merges {result.under_merges}; relation recall {result.relation_recall:.3f}; "
        f"page accuracy {result.page_accuracy:.3f}; {result.entities} entities"
    )
    assert result.negatives_merged == []
    assert result.over_merges == []
    assert result.pairwise_f1 >= 0.95
    assert result.page_accuracy == 1.0
    assert result.relation_recall >= 0.9


def _from_scratch(tmp_path, contents: dict[str, str], name: str) -> set[tuple]:
    init_database(f"sqlite:///{tmp_path}/{name}.db")
    migrate()
    for asset_id, doc_id in sorted(contents.items()):
        ingest(asset_id, DOCUMENTS[doc_id]["workspace"], DOCUMENTS[doc_id])
    return snapshot()


@pytest.mark.parametrize("seed", range(12))
def test_any_sequence_of_uploads_reuploads_and_deletions_equals_a_build_from_scratch(tmp_path, seed):
    """The property of issue 39: random sequences over the gold set end in exactly the graph built from scratch from
    the documents that remain (entities by aliases, types, identifiers and mentions; relations)."""
    from worker_service.knowledge.graphstore import remove_contribution

    rng = random.Random(seed)
    init_database(f"sqlite:///{tmp_path}/steps.db")
    migrate()
    contents: dict[str, str] = {}  # asset -> the document it holds now
    assets = [f"a{i}" for i in range(8)]
    for _step in range(30):
        asset, action = rng.choice(assets), rng.random()
        if action < 0.65:  # an upload, or a re-upload with other content
            doc_id = rng.choice(list(DOCUMENTS))
            ingest(asset, DOCUMENTS[doc_id]["workspace"], DOCUMENTS[doc_id])
            contents[asset] = doc_id
        elif asset in contents:
            with session(transaction=True):
                remove_contribution(asset)
            del contents[asset]
    stepped = snapshot()
    assert stepped == _from_scratch(tmp_path, contents, "scratch")


def test_the_same_names_in_two_workspaces_stay_apart(db):
    ingest("a-default", "default", DOCUMENTS["contract-15"])
    ingest("a-other", "other", DOCUMENTS["contract-15"])
    with session():
        romashka = list(KgEntity.select().where(KgEntity.name == "ООО «Ромашка»"))
    assert sorted(e.workspace for e in romashka) == ["default", "other"]


def test_two_organisations_with_different_inn_stay_two(db):
    _all(["tender-a", "tender-b"])
    with session():
        named = [e for e in KgEntity.select().where(KgEntity.workspace == "tenders") if "Ромашка" in e.name]
    assert len(named) == 2


def _one_chunk(text: str, entities: list[tuple[str, str]], relations: list[tuple[str, str, str]]) -> dict:
    return {
        "id": "x",
        "workspace": "default",
        "chunks": [
            {
                "text": text,
                "entities": [[n, t, "", None] for n, t in entities],
                "relations": [[s, t, k, "", ""] for s, t, k in relations],
            }
        ],
    }


def _entities() -> dict[str, tuple[str, list[str]]]:
    with session():
        out = {}
        for entity in KgEntity.select():
            surfaces = sorted(
                {
                    s
                    for (s,) in KgMention.select(KgMention.surface)
                    .join(KgAlias)
                    .where(KgAlias.entity == entity.id)
                    .tuples()
                }
            )
            out[entity.name] = (entity.type, surfaces)
        return out


def test_regression_a_relation_to_an_unlisted_entity_joins_the_real_one_when_it_comes(db):
    """Old merge: the unlisted endpoint became a ``name|UNKNOWN`` placeholder, the real entity arrived as a second
    node, and later relations attached to the placeholder."""
    from worker_service.knowledge.graphstore import replace_contribution
    from worker_service.knowledge.mentions import mentions_of

    first = Extraction(
        entities=[Entity(name="Ann", type="PERSON")],
        relations=[Relation(source="Ann", target="Acme", type="WORKS_FOR")],
    )
    second = Extraction(
        entities=[Entity(name="Acme", type="ORGANIZATION")],
        relations=[Relation(source="Bob", target="Acme", type="WORKS_FOR")],
    )
    text = "Ann works for Acme.\n\nAcme hired Bob."
    mentions, relations = mentions_of(text, [(0, 18), (20, 35)], [first, second])
    with session(transaction=True):
        Asset.insert(asset_id="a1", status="extracted").execute()
        replace_contribution("a1", "default", mentions, relations)
    entities = _entities()
    assert entities["Acme"][0] == "ORGANIZATION" and [n for n in entities if "Acme" in n] == ["Acme"]
    from worker_service.knowledge.graphread import relations as edges

    acme = next(e.id for e in KgEntity.select() if e.name == "Acme")
    assert sorted(e["type"] for e in edges("default") if e["target"] == acme) == ["WORKS_FOR", "WORKS_FOR"]


def test_regression_the_same_name_under_two_type_labels_is_one_node(db):
    ingest("a1", "default", _one_chunk("Acme and Acme.", [("Acme", "ORGANIZATION"), ("Acme", "COMPANY")], []))
    assert list(_entities()) == ["Acme"] and _entities()["Acme"][0] == "ORGANIZATION"


def test_regression_every_quote_form_and_spelling_is_one_node_and_every_surface_an_alias(db):
    ingest(
        "a1",
        "default",
        _one_chunk(
            'ООО «Ромашка», ООО "Ромашка", Ромашка и Romashka LLC.',
            [
                ("ООО «Ромашка»", "ORGANIZATION"),
                ('ООО "Ромашка"', "ORGANIZATION"),
                ("Ромашка", "COMPANY"),
                ("Romashka LLC", "ORGANIZATION"),
            ],
            [],
        ),
    )
    (only,) = _entities().values()
    assert only[1] == sorted(["ООО «Ромашка»", 'ООО "Ромашка"', "Ромашка", "Romashka LLC"])


def test_regression_two_nodes_with_one_display_name_keep_their_own_relations(db):
    """Old merge: relation endpoints were stored by display name, so two nodes named "Bob" could not be told
    apart. Two people shown as "Bob" (different e-mail addresses: two people) each keep their own relation."""
    from worker_service.knowledge.graphread import relations as edges

    ingest(
        "a1",
        "default",
        _one_chunk(
            "Bob, bob@acme.example, works for Acme.",
            [("Bob", "PERSON"), ("Acme", "ORGANIZATION")],
            [("Bob", "Acme", "WORKS_FOR")],
        ),
    )
    ingest(
        "a2",
        "default",
        _one_chunk(
            "Bob, bob@globex.example, works for Globex.",
            [("Bob", "PERSON"), ("Globex", "ORGANIZATION")],
            [("Bob", "Globex", "WORKS_FOR")],
        ),
    )
    with session():
        bobs = [e.id for e in KgEntity.select().where(KgEntity.name == "Bob")]
        employer = {e.name: e.id for e in KgEntity.select().where(KgEntity.name != "Bob")}
    assert len(bobs) == 2
    found = {(e["source"], e["target"]) for e in edges("default")}
    assert len(found) == 2 and {s for s, _t in found} == set(bobs)
    assert {t for _s, t in found} == {employer["Acme"], employer["Globex"]}


def test_regression_a_mention_has_the_page_of_its_own_surface_not_the_chunks_range(db):
    doc = DOCUMENTS["annual-report"]
    ingest("a1", "default", doc)
    text, _spans = text_and_spans(doc)
    with session():
        pages = {s: p for s, p in KgMention.select(KgMention.surface, KgMention.page).tuples()}
    assert pages["Romashka"] == 1 and pages["Ivan Ivanov"] == 2 and pages["Vasilek JSC"] == 3
    assert "<!-- page 3 -->" in text


def test_an_operators_merge_and_split_survive_deletions_rebuilds_and_later_uploads(db):
    from worker_service.knowledge.curation import merge, split
    from worker_service.knowledge.graphstore import remove_contribution

    _all(["contract-15", "invoice-117", "pricelist-2024"])

    def entity_of(surface: str) -> int:
        with session():
            return (
                KgAlias.select(KgAlias.entity)
                .join(KgMention)
                .where(KgMention.surface == surface)
                .get()
                .entity_id
            )

    merged = merge([entity_of("ООО «Лютик»"), entity_of("Чай мятный")], "op")
    remaining, moved = split(entity_of("Romashka LLC"), ["Romashka LLC"], "op")
    assert entity_of("Чай мятный") == entity_of("Lyutik Ltd") == merged
    assert entity_of("Romashka LLC") == moved != remaining == entity_of("ООО «Ромашка»")
    with session(transaction=True):  # deletions and re-uploads resolve the blocks again: the decisions hold
        remove_contribution("asset-pricelist-2024")
    ingest("asset-pricelist-2024", "default", DOCUMENTS["pricelist-2024"])
    ingest("asset-invoice-117", "default", DOCUMENTS["invoice-117"])
    ingest("later", "default", DOCUMENTS["invoice-45"])
    assert entity_of("Чай мятный") == entity_of("ООО «Лютик»")
    assert entity_of("Romashka LLC") != entity_of("ООО «Ромашка»")
    # a later merge lifts the split
    merge([entity_of("Romashka LLC"), entity_of("ООО «Ромашка»")], "op")
    assert entity_of("Romashka LLC") == entity_of("ООО «Ромашка»")


def test_an_entity_whose_email_the_crm_ledger_knows_names_that_kommo_contact_and_creates_nothing(db):
    from worker_service.database import CrmLink
    from worker_service.identifiers import CONTACT_IDENTIFIER
    from worker_service.knowledge.graphread import list_entities

    with session():
        CrmLink.create(kind=CONTACT_IDENTIFIER, key="email:i.ivanov@romashka.ru", kommo_id=77)
        before = CrmLink.select().count()
    _all(["invoice-117", "contract-15"])
    found = {e["name"]: e for e in list_entities("default", limit=100)["entities"]}
    ivanov = next(e for e in found.values() if "Ivan Ivanov" in e["aliases"])
    assert ivanov["kommo_id"] == 77 and ivanov["identifiers"] == {
        "email": ["i.ivanov@romashka.ru"],
        "phone": ["+74951234567"],
    }
    assert "Иванова Ивана Ивановича" in ivanov["aliases"]  # one person across the two documents
    assert all(e["kommo_id"] is None for e in found.values() if e is not ivanov)
    with session():
        assert CrmLink.select().count() == before
