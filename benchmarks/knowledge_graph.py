"""``python -m benchmarks knowledge_graph``: one more document in a large workspace graph, and deleting one.

A synthetic workspace of N documents (10^3 and 10^4; ``BENCH_FULL=1`` adds 10^5 is not offered: the goal is
10^4) with about ten entities each (people with Russian names, organisations with legal forms, places shared by
many), bulk-loaded as an already resolved graph. Then, through the real path (knowledge.mentions ->
graphstore.replace_contribution, one transaction each): 40 new documents, each naming two people and an
organisation already in the graph, a shared place and six new things, and 40 deletions. p50/p99 per
operation, on PostgreSQL and SQLite side by side, with the peak RSS growth of the process (no whole-graph
load: it stays flat).
"""

from __future__ import annotations

import random
import resource
import tempfile
import time
from typing import Any

from benchmarks.common import PG_URL, postgres_skipped

SYLLABLES = [
    "ка",
    "ро",
    "ми",
    "ла",
    "то",
    "ве",
    "ни",
    "за",
    "бо",
    "лу",
    "ре",
    "со",
    "ти",
    "па",
    "ду",
    "ге",
    "мо",
    "ши",
]
FIRST = ["Иван", "Пётр", "Анна", "Мария", "Олег", "Ольга", "Сергей", "Елена", "Дмитрий", "Наталья"]
PATRONYMIC = ["Иванович", "Петрович", "Сергеевич", "Олегович", "Андреевич"]
PLACES = ["Москва", "Санкт-Петербург", "Казань", "Новосибирск", "Екатеринбург", "Самара", "Омск", "Пермь"]
SIZES = (1_000, 10_000)
OPERATIONS = 40


def _word(rng: random.Random, syllables: int) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(syllables)).capitalize()


class Vocabulary:
    """Names of people and organisations, distinct from each other (a syllable word each, seldom repeated)."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.seen: set[str] = set()

    def fresh(self, syllables: int = 4) -> str:
        for attempt in range(1_000):
            word = _word(self.rng, syllables + attempt // 20)  # a longer word once the short ones run out
            if word not in self.seen:
                self.seen.add(word)
                return word
        raise RuntimeError("no fresh word")

    def person(self) -> str:
        first = self.rng.choice(FIRST)
        surname = self.fresh() + ("ова" if first[-1] == "а" else "ов")
        return f"{surname} {first} {self.rng.choice(PATRONYMIC)}"

    def organisation(self) -> str:
        return f"ООО «{self.fresh(3)}»"


def _bulk_load(documents: int, vocabulary: Vocabulary) -> tuple[list[str], list[str]]:
    """A resolved workspace of ``documents`` assets; (people, organisations) in it, to be named again."""
    from worker_service.database import Asset, session
    from worker_service.database.graph_models import KgAlias, KgAliasKey, KgEntity, KgMention
    from worker_service.knowledge.names import profile

    people: list[str] = []
    organisations: list[str] = []
    places = {name: None for name in PLACES}
    aliases: dict[str, int] = {}
    with session(transaction=True):
        place_alias = {}
        for name in PLACES:
            p = profile(name, "CITY")
            entity = KgEntity.create(workspace="bench", name=name, type="PLACE")
            alias = KgAlias.create(workspace="bench", profile_key=p.key, profile=p.to_json(), entity=entity)
            KgAliasKey.insert_many(
                [{"alias": alias.id, "workspace": "bench", "key": k} for k in p.keys()]
            ).execute()
            place_alias[name] = alias.id
        for number in range(documents):
            asset_id = f"doc-{number}"
            Asset.insert(asset_id=asset_id, status="extracted", workspace="bench").execute()
            names = (
                [(vocabulary.person(), "PERSON") for _ in range(4)]
                + [(vocabulary.organisation(), "ORGANIZATION") for _ in range(3)]
                + [(vocabulary.fresh(3) + " " + vocabulary.fresh(2), "PRODUCT") for _ in range(2)]
            )
            mentions = []
            for name, label in names:
                p = profile(name, label)
                if (
                    p.key not in aliases
                ):  # two words may share a dictionary form: one alias, as resolution makes
                    entity = KgEntity.create(workspace="bench", name=name, type=label)
                    alias = KgAlias.create(
                        workspace="bench", profile_key=p.key, profile=p.to_json(), entity=entity
                    )
                    KgAliasKey.insert_many(
                        [{"alias": alias.id, "workspace": "bench", "key": k} for k in sorted(p.keys())]
                    ).execute()
                    aliases[p.key] = alias.id
                mentions.append(
                    {
                        "asset": asset_id,
                        "alias": aliases[p.key],
                        "workspace": "bench",
                        "chunk": 0,
                        "surface": name,
                        "folded": name.lower(),
                        "type": label,
                        "page": None,
                    }
                )
                (people if label == "PERSON" else organisations if label == "ORGANIZATION" else []).append(
                    name
                )
            place = vocabulary.rng.choice(list(places))
            mentions.append(
                {
                    "asset": asset_id,
                    "alias": place_alias[place],
                    "workspace": "bench",
                    "chunk": 0,
                    "surface": place,
                    "folded": place.lower(),
                    "type": "PLACE",
                    "page": None,
                }
            )
            KgMention.insert_many(mentions).execute()
    return people, organisations


def _document(vocabulary: Vocabulary, people: list[str], organisations: list[str]) -> tuple[str, Any]:
    from worker_service.knowledge.graph import Entity, Extraction, Relation

    rng = vocabulary.rng
    named = [
        (rng.choice(people), "PERSON"),
        (rng.choice(people), "PERSON"),
        (rng.choice(organisations), "COMPANY"),
        (rng.choice(PLACES), "CITY"),
    ]
    named += [(vocabulary.person(), "PERSON"), (vocabulary.organisation(), "ORGANIZATION")]
    named += [(vocabulary.fresh(3) + " " + vocabulary.fresh(2), "PRODUCT") for _ in range(4)]
    text = ". ".join(f"{name} упомянут здесь" for name, _label in named)
    extraction = Extraction(
        entities=[Entity(name=n, type=t) for n, t in named],
        relations=[
            Relation(source=named[0][0], target=named[2][0], type="WORKS_FOR"),
            Relation(source=named[2][0], target=named[3][0], type="LOCATED_IN"),
        ],
    )
    return text, extraction


def _measure(url: str, documents: int) -> dict[str, float]:
    from worker_service.database import Asset, init_database, migrate, session
    from worker_service.knowledge.graphstore import remove_contribution, replace_contribution
    from worker_service.knowledge.mentions import mentions_of

    init_database(url)
    migrate()
    vocabulary = Vocabulary(documents)
    people, organisations = _bulk_load(documents, vocabulary)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    added, deleted = [], []
    for number in range(OPERATIONS):
        text, extraction = _document(vocabulary, people, organisations)
        started = time.perf_counter()
        mentions, relations = mentions_of(text, [(0, len(text))], [extraction])
        with session(transaction=True):
            Asset.insert(asset_id=f"new-{number}", status="extracted", workspace="bench").execute()
            replace_contribution(f"new-{number}", "bench", mentions, relations)
        added.append(time.perf_counter() - started)
    for number in range(OPERATIONS):
        started = time.perf_counter()
        with session(transaction=True):
            remove_contribution(f"doc-{number * (documents // OPERATIONS)}")
        deleted.append(time.perf_counter() - started)
    rss_growth = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    with session():
        from worker_service.database.graph_models import KgEntity

        entities = KgEntity.select().where(KgEntity.workspace == "bench").count()
    return {
        "add_p50": _pct(added, 50),
        "add_p99": _pct(added, 99),
        "delete_p50": _pct(deleted, 50),
        "delete_p99": _pct(deleted, 99),
        "rss_growth_mb": rss_growth,
        "entities": entities,
    }


def _pct(values: list[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))] * 1000


def growth() -> list[dict[str, Any]]:
    """One more document and one deletion in a workspace of 10^3 and 10^4 documents (~10^5 entities), on
    PostgreSQL and SQLite: p50/p99 ms, and how they grow."""
    from tests.support.helpers import pg_schema_url

    rows: list[dict[str, Any]] = []
    backends: list[tuple[str, Any]] = [("sqlite", lambda n, tmp: f"sqlite:///{tmp}/graph-{n}.db")]
    skipped = postgres_skipped("knowledge_graph")
    if skipped is None:
        backends.insert(0, ("postgresql", lambda n, _tmp: pg_schema_url(PG_URL, f"bench_graph_{n}")))
    else:
        rows += skipped
    with tempfile.TemporaryDirectory() as tmp:
        for backend, url in backends:
            results = {n: _measure(url(n, tmp), n) for n in SIZES}
            small, large = results[SIZES[0]], results[SIZES[-1]]
            for n, result in results.items():
                for what in ("add", "delete"):
                    rows.append(
                        {
                            "benchmark": "knowledge_graph",
                            "variant": f"{backend} {what} one document, {n:,} docs",
                            "value": round(result[f"{what}_p50"], 1),
                            "unit": "ms p50",
                            "notes": f"p99 {result[f'{what}_p99']:.1f} ms; {result['entities']:,} entities; "
                            f"peak RSS +{result['rss_growth_mb']:.0f} MB over {OPERATIONS * 2} ops",
                        }
                    )
            for what in ("add", "delete"):
                rows.append(
                    {
                        "benchmark": "knowledge_graph",
                        "variant": f"{backend} {what}: 10^4 / 10^3 docs",
                        "value": round(large[f"{what}_p50"] / small[f"{what}_p50"], 2),
                        "unit": "x p50",
                        "notes": f"p99 {large[f'{what}_p99'] / small[f'{what}_p99']:.2f}x (goal: within 1.5x, "
                        f"p99 under 100 ms)",
                    }
                )
    return rows
