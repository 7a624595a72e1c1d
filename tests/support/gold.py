"""The knowledge-graph gold set (tests/gold/knowledge.json) fed through the real resolution and store, and scored.

``ingest(doc)`` stores one document's contribution the way ``extract_knowledge`` does after its LLM calls (the
gold extractions stand in for the model's answers); ``score()`` compares the graph in the database with the
gold entities: pairwise and B-cubed precision and recall of merged mentions, over- and under-merges, hard
negatives merged, relation recall, page accuracy.
"""

from __future__ import annotations

import itertools
import json
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from worker_service.knowledge.graph import Entity, Extraction, Relation

GOLD = json.loads((Path(__file__).resolve().parents[1] / "gold" / "knowledge.json").read_text())
DOCUMENTS: dict[str, dict[str, Any]] = {d["id"]: d for d in GOLD["documents"]}


def text_and_spans(doc: dict[str, Any]) -> tuple[str, list[tuple[int, int]]]:
    """The document's text (its chunks joined by a blank line) and where each chunk is in it."""
    text, spans = "", []
    for chunk in doc["chunks"]:
        if text:
            text += "\n\n"
        spans.append((len(text), len(text) + len(chunk["text"])))
        text += chunk["text"]
    return text, spans


def extractions(doc: dict[str, Any]) -> list[Extraction]:
    return [
        Extraction(
            entities=[Entity(name=e[0], type=e[1], description="") for e in chunk["entities"]],
            relations=[Relation(source=r[0], target=r[1], type=r[2]) for r in chunk["relations"]],
        )
        for chunk in doc["chunks"]
    ]


def gold_labels() -> dict[tuple[str, str], str]:
    """(document, surface) -> gold entity, for listed entities and relation endpoints alike."""
    labels: dict[tuple[str, str], str] = {}
    for doc in GOLD["documents"]:
        for chunk in doc["chunks"]:
            for name, _type, label, _page in chunk["entities"]:
                labels[(doc["id"], name)] = label
            for source, target, _type, source_label, target_label in chunk["relations"]:
                labels.setdefault((doc["id"], source), source_label)
                labels.setdefault((doc["id"], target), target_label)
    return labels


def ingest(asset_id: str, workspace: str, doc: dict[str, Any]) -> None:
    """The document's contribution, replacing what ``asset_id`` contributed before (an Asset row is made)."""
    from worker_service.database import Asset, session
    from worker_service.knowledge.graphstore import replace_contribution
    from worker_service.knowledge.mentions import mentions_of

    text, spans = text_and_spans(doc)
    mentions, relations = mentions_of(text, spans, extractions(doc))
    with session(transaction=True):
        Asset.insert(asset_id=asset_id, status="extracted", workspace=workspace).on_conflict(
            conflict_target=[Asset.asset_id], update={Asset.workspace: workspace}
        ).execute()
        entities, relations_ = replace_contribution(asset_id, workspace, mentions, relations)
        # what knowledge.store.store_contribution records with it (the asset page and knowledge.done read them)
        Asset.update(knowledge_entities=entities, knowledge_relations=relations_).where(
            Asset.asset_id == asset_id
        ).execute()


@dataclass
class Score:
    pairwise_precision: float
    pairwise_recall: float
    bcubed_precision: float
    bcubed_recall: float
    over_merges: list[tuple[str, str]]  # gold entities that share an entity
    negatives_merged: list[tuple[str, str]]
    under_merges: list[str]  # gold entities split over several entities
    relation_recall: float
    page_accuracy: float
    entities: int

    @property
    def pairwise_f1(self) -> float:
        p, r = self.pairwise_precision, self.pairwise_recall
        return 2 * p * r / (p + r) if p + r else 0.0


def score(asset_of_doc: dict[str, str]) -> Score:
    """Score the graph in the database; ``asset_of_doc`` maps each ingested document to its asset id."""
    from worker_service.database import session
    from worker_service.database.graph_models import KgAlias, KgEntity, KgMention
    from worker_service.knowledge.graphread import relations

    labels = gold_labels()
    doc_of_asset = {a: d for d, a in asset_of_doc.items()}
    with session():
        rows = list(
            KgMention.select(
                KgMention.asset, KgMention.surface, KgMention.page, KgAlias.entity, KgEntity.workspace
            )
            .join(KgAlias)
            .join(KgEntity)
            .tuples()
        )
        workspaces = {w for (w,) in KgEntity.select(KgEntity.workspace).distinct().tuples()}
        system_edges = [e for w in workspaces for e in relations(w)]
        entities = KgEntity.select().count()
    mentions = [
        (labels[(doc_of_asset[a], s)], entity, (doc_of_asset[a], s), page) for a, s, page, entity, _w in rows
    ]
    same_gold = same_system = both = 0
    for (g1, e1, _m1, _p1), (g2, e2, _m2, _p2) in itertools.combinations(mentions, 2):
        same_gold += g1 == g2
        same_system += e1 == e2
        both += g1 == g2 and e1 == e2
    by_entity = Counter(e for _g, e, _m, _p in mentions)
    by_gold = Counter(g for g, _e, _m, _p in mentions)
    pair = Counter((g, e) for g, e, _m, _p in mentions)
    b_precision = sum(pair[(g, e)] / by_entity[e] for g, e, _m, _p in mentions) / len(mentions)
    b_recall = sum(pair[(g, e)] / by_gold[g] for g, e, _m, _p in mentions) / len(mentions)
    golds_of: dict[int, set[str]] = {}
    entities_of: dict[str, set[int]] = {}
    for g, e, _m, _p in mentions:
        golds_of.setdefault(e, set()).add(g)
        entities_of.setdefault(g, set()).add(e)
    over = sorted(
        {
            tuple(sorted(pair_))
            for gs in golds_of.values()
            if len(gs) > 1
            for pair_ in itertools.combinations(sorted(gs), 2)
        }
    )
    negatives = {tuple(sorted(n)) for n in GOLD["hard_negatives"]}
    label_of_entity = {
        e: Counter(g for g, e2, _m, _p in mentions if e2 == e).most_common(1)[0][0] for e in by_entity
    }
    gold_edges = {
        (r[3], r[4], r[2])
        for doc in asset_of_doc
        for chunk in DOCUMENTS[doc]["chunks"]
        for r in chunk["relations"]
    }
    found_edges = {
        (label_of_entity.get(e["source"]), label_of_entity.get(e["target"]), e["type"]) for e in system_edges
    }
    expected_pages = {
        (doc, e[0]): e[3]
        for doc in asset_of_doc
        for chunk in DOCUMENTS[doc]["chunks"]
        for e in chunk["entities"]
        if e[3] is not None
    }
    pages_right = [page == expected_pages[m] for _g, _e, m, page in mentions if m in expected_pages]
    return Score(
        pairwise_precision=both / same_system if same_system else 1.0,
        pairwise_recall=both / same_gold if same_gold else 1.0,
        bcubed_precision=b_precision,
        bcubed_recall=b_recall,
        over_merges=over,
        negatives_merged=[o for o in over if o in negatives],
        under_merges=sorted(g for g, es in entities_of.items() if len(es) > 1),
        relation_recall=len(gold_edges & found_edges) / len(gold_edges) if gold_edges else 1.0,
        page_accuracy=sum(pages_right) / len(pages_right) if pages_right else 1.0,
        entities=entities,
    )


def snapshot(workspace: str | None = None) -> set[tuple]:
    """The graph by what it says, not by ids: each entity as (type, aliases, identifiers, mentions), each relation
    as (source entity, target entity, type, assets, weight)."""
    from worker_service.database import session
    from worker_service.database.graph_models import KgEntity
    from worker_service.knowledge.graphread import relations, workspace_graph

    out: set[tuple] = set()
    with session():
        workspaces = (
            [workspace]
            if workspace
            else [w for (w,) in KgEntity.select(KgEntity.workspace).distinct().tuples()]
        )
    for ws in workspaces:
        graph = workspace_graph(ws)
        describe = {}
        for node in graph["nodes"]:
            mentions = tuple(sorted((m["asset_id"], m["surface"], m["page"] or 0) for m in node["mentions"]))
            describe[node["id"]] = (
                ws,
                node["type"],
                tuple(node["aliases"]),
                tuple(sorted((k, tuple(v)) for k, v in node["identifiers"].items())),
                mentions,
            )
            out.add(("entity", *describe[node["id"]]))
        for edge in relations(ws):
            out.add(
                (
                    "relation",
                    describe[edge["source"]][4],
                    describe[edge["target"]][4],
                    edge["type"],
                    tuple(edge["assets"]),
                    edge["weight"],
                )
            )
    return out


def store_as_extracted(asset_id: str, workspace: str, doc: dict[str, Any], model: str) -> None:
    """A single-chunk gold document as a finished ``extract_knowledge`` leaves it: the asset's text, its chunk
    result in the cache (so ``worker graph rebuild`` derives it again, no LLM call), its usage and its
    contribution to the graph."""
    from worker_service.database import Asset, AssetText, LlmChunk, LlmUsage, session
    from worker_service.knowledge.graph import PROMPT_VERSION, chunk_key

    text, _spans = text_and_spans(doc)
    (extraction,) = extractions(doc)
    with session(transaction=True):
        Asset.insert(
            asset_id=asset_id, status="extracted", workspace=workspace, knowledge_status="done"
        ).execute()
        AssetText.insert(asset=asset_id, sha256="gold", text=text).execute()
        LlmChunk.insert(
            key=chunk_key(model, text.strip()),
            model=model,
            prompt_version=PROMPT_VERSION,
            valid=True,
            result=extraction.model_dump_json(),
        ).on_conflict_ignore().execute()
        LlmUsage.insert(asset=asset_id, model=model).execute()
    ingest(asset_id, workspace, doc)
