"""Reading the workspace graph: the entity list and search, one entity with its mentions and relations, the whole
graph of a workspace, an asset's part of it. Everything is derived from mentions at read time (docs/contracts.rst,
"Knowledge graph"); reads are by index (an entity's aliases, a key), never a scan of another workspace.

ENTITY: ``{"id", "workspace", "name", "type", "aliases": [every surface form seen], "identifiers": {"inn": [...],
"ogrn": [...], "email": [...], "phone": [...]} (kinds found only), "assets", "mentions", "kommo_id"}``.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from worker_service.database import Asset, session
from worker_service.database.graph_models import KgAlias, KgAliasKey, KgEntity, KgMention, KgRelation
from worker_service.knowledge.graphstore import BATCH, fold
from worker_service.knowledge.names import Profile, profile

MAX_LIMIT = 500


def _chunks(values: Iterable[int]) -> Iterable[list[int]]:
    items = sorted(set(values))
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def entities_json(entities: list[KgEntity], *, with_mentions: bool = False) -> list[dict[str, Any]]:
    """ENTITY objects for ``entities`` (a few queries for all of them); ``with_mentions``: the list of mentions
    ``[{"asset_id", "surface", "page"}]`` instead of their number."""
    ids = [e.id for e in entities]
    aliases: dict[int, set[str]] = {i: set() for i in ids}
    identifiers: dict[int, dict[str, set[str]]] = {i: {} for i in ids}
    assets: dict[int, set[str]] = {i: set() for i in ids}
    counts: dict[int, int] = dict.fromkeys(ids, 0)
    listed: dict[int, list[dict[str, Any]]] = {i: [] for i in ids}
    for batch in _chunks(ids):
        for entity, raw in (
            KgAlias.select(KgAlias.entity, KgAlias.profile).where(KgAlias.entity.in_(batch)).tuples()
        ):
            for kind, value in Profile.from_json(raw).identifiers:
                identifiers[entity].setdefault(kind, set()).add(value)
        query = (
            KgMention.select(KgAlias.entity, KgMention.asset, KgMention.surface, KgMention.page, KgMention.id)
            .join(KgAlias)
            .where(KgAlias.entity.in_(batch))
            .order_by(KgMention.asset, KgMention.id)
            .tuples()
        )
        for entity, asset, surface, page, _id in query:
            aliases[entity].add(surface)
            assets[entity].add(asset)
            counts[entity] += 1
            if with_mentions:
                listed[entity].append({"asset_id": asset, "surface": surface, "page": page})
    kommo = _kommo_ids({e.id: identifiers[e.id] for e in entities if e.type in ("PERSON", "ORGANIZATION")})
    return [
        {
            "id": e.id,
            "workspace": e.workspace,
            "name": e.name,
            "type": e.type,
            "aliases": sorted(aliases[e.id]),
            "identifiers": {k: sorted(v) for k, v in sorted(identifiers[e.id].items())},
            "assets": len(assets[e.id]),
            "mentions": listed[e.id] if with_mentions else counts[e.id],
            "kommo_id": kommo.get(e.id),
        }
        for e in entities
    ]


def _kommo_ids(identifiers: dict[int, dict[str, set[str]]]) -> dict[int, int]:
    """The Kommo contact the CRM ledger knows by one of an entity's e-mail addresses or phones (the graph only
    reads the ledger: nothing is created in Kommo by this)."""
    from worker_service.database import CrmLink
    from worker_service.identifiers import CONTACT_IDENTIFIER

    wanted = {
        f"{kind}:{value}": entity
        for entity, kinds in identifiers.items()
        for kind in ("email", "phone")
        for value in kinds.get(kind, ())
    }
    found: dict[int, int] = {}
    keys = sorted(wanted)
    for start in range(0, len(keys), BATCH):
        for key, kommo_id in (
            CrmLink.select(CrmLink.key, CrmLink.kommo_id)
            .where(CrmLink.kind == CONTACT_IDENTIFIER, CrmLink.key.in_(keys[start : start + BATCH]))
            .order_by(CrmLink.key)
            .tuples()
        ):
            found.setdefault(wanted[key], kommo_id)
    return found


def list_entities(
    workspace: str, *, q: str = "", type_: str = "", limit: int = 50, cursor: int = 0
) -> dict[str, Any]:
    """``{"entities": [ENTITY], "next_cursor"}``: by id, from ``cursor``; ``q`` matches any alias case- and
    ё-insensitively, as a substring of a surface form or through the keys resolution uses (``ромашки`` and
    ``romashka`` find ``Ромашка``)."""
    limit = max(1, min(limit, MAX_LIMIT))
    with session():
        query = KgEntity.select().where(KgEntity.workspace == workspace, KgEntity.id > cursor)
        if type_:
            query = query.where(KgEntity.type == type_.upper())
        if q.strip():
            query = query.where(KgEntity.id.in_(_matching(workspace, q.strip())))
        found = list(query.order_by(KgEntity.id).limit(limit + 1))
        page = entities_json(found[:limit])
    return {"entities": page, "next_cursor": found[limit - 1].id if len(found) > limit else None}


def _matching(workspace: str, q: str) -> Any:
    """The ids of the entities with an alias ``q`` matches (a subquery)."""
    wanted = profile(q)
    keys = sorted(k for k in wanted.keys() if k.startswith(("n:", "t:", "p:", "s:")))
    by_key = (
        KgAlias.select(KgAlias.entity)
        .join(KgAliasKey)
        .where(KgAliasKey.workspace == workspace, KgAliasKey.key.in_(keys))
    )
    by_text = (
        KgAlias.select(KgAlias.entity)
        .join(KgMention)
        .where(KgMention.workspace == workspace, KgMention.folded.contains(fold(q)))
    )
    return by_key | by_text


def entity(entity_id: int) -> dict[str, Any] | None:
    """ENTITY with its mentions and its relations ``[{"type", "source", "target", "assets", "weight"}]``."""
    with session():
        found = KgEntity.get_or_none(KgEntity.id == entity_id)
        if found is None:
            return None
        out = entities_json([found], with_mentions=True)[0]
        out["relations"] = relations(found.workspace, entity_id=entity_id)
    return out


def names_of(entity_ids: set[int]) -> dict[int, str]:
    with session():
        return (
            dict(
                KgEntity.select(KgEntity.id, KgEntity.name)
                .where(KgEntity.id.in_(sorted(entity_ids)))
                .tuples()
            )
            if entity_ids
            else {}
        )


def relations(
    workspace: str, *, entity_id: int | None = None, asset_id: str | None = None
) -> list[dict[str, Any]]:
    """Relations grouped by (source entity, target entity, type): the assets that state them, weights summed."""
    source, target = KgAlias.alias(), KgAlias.alias()
    query = (
        KgRelation.select(source.entity, target.entity, KgRelation.type, KgRelation.asset, KgRelation.weight)
        .join(source, on=(KgRelation.source == source.id))
        .join(target, on=(KgRelation.target == target.id), src=KgRelation)
        .where(KgRelation.workspace == workspace)
    )
    if entity_id is not None:
        query = query.where((source.entity == entity_id) | (target.entity == entity_id))
    if asset_id is not None:
        query = query.where(KgRelation.asset == asset_id)
    grouped: dict[tuple[int, int, str], dict[str, Any]] = {}
    for src, dst, kind, asset, weight in query.tuples():
        edge = grouped.setdefault(
            (src, dst, kind), {"type": kind, "source": src, "target": dst, "assets": set(), "weight": 0.0}
        )
        edge["assets"].add(asset)
        edge["weight"] += weight
    return [{**edge, "assets": sorted(edge["assets"])} for _key, edge in sorted(grouped.items())]


def workspace_graph(workspace: str) -> dict[str, Any]:
    """``{"nodes": [ENTITY with "mentions"], "edges": [{"source", "target", "type", "assets", "weight"}]}``."""
    with session():
        entities = list(KgEntity.select().where(KgEntity.workspace == workspace).order_by(KgEntity.id))
        nodes = entities_json(entities, with_mentions=True)
        edges = [
            {k: e[k] for k in ("source", "target", "type", "assets", "weight")} for e in relations(workspace)
        ]
    return {"workspace": workspace, "nodes": nodes, "edges": edges}


def asset_graph(asset_id: str) -> dict[str, Any] | None:
    """The asset's part of its workspace graph, in the shape ``/api/assets/ID/graph`` always had, each entity
    and relation with its graph id(s)."""
    with session():
        asset = Asset.get_or_none(Asset.asset_id == asset_id)
        if asset is None:
            return None
        rows = (
            KgMention.select(KgAlias.entity, KgMention.description, KgMention.page)
            .join(KgAlias)
            .where(KgMention.asset == asset_id)
            .tuples()
        )
        per: dict[int, dict[str, Any]] = {}
        for entity_id, description, page in rows:
            item = per.setdefault(entity_id, {"descriptions": [], "mentions": 0, "pages": set()})
            item["mentions"] += 1
            if page is not None:
                item["pages"].add(page)
            if description and description not in item["descriptions"]:
                item["descriptions"].append(description)
        named = {e.id: e for e in KgEntity.select().where(KgEntity.id.in_(sorted(per)))} if per else {}
        entities = sorted(
            (
                {
                    "id": i,
                    "name": named[i].name,
                    "type": named[i].type,
                    **per[i],
                    "pages": sorted(per[i]["pages"]),
                }
                for i in per
                if i in named
            ),
            key=lambda e: (-e["mentions"], e["name"]),
        )
        edges = relations(asset.workspace, asset_id=asset_id)
    return {
        "asset_id": asset_id,
        "workspace": asset.workspace,
        "entities": entities,
        "relations": [
            {
                "source": named[e["source"]].name,
                "target": named[e["target"]].name,
                "source_id": e["source"],
                "target_id": e["target"],
                "type": e["type"],
                "weight": e["weight"],
            }
            for e in edges
            if e["source"] in named and e["target"] in named
        ],
    }
