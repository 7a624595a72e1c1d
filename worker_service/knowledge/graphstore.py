"""Writing the workspace graph: an asset's contribution added, replaced or removed, and the touched block resolved.

Every function here runs inside the caller's transaction (``session(transaction=True)``), so a contribution
and its resolution are one unit: a reader sees the graph before or after, never half of it.

* :func:`replace_contribution` removes the asset's mentions and relation mentions (of any workspace), adds the
  new ones under their aliases (one per distinct profile and workspace, with its blocking keys), and
  re-resolves the block they touch.
* :func:`remove_contribution` is the same with nothing new: what the asset alone said is gone, aliases left
  with no mention are gone, entities left with no alias are gone.
* :func:`resolve_block` gathers every alias reachable from the touched ones through shared keys and decisions
  (an index lookup per round: never a scan of the graph), clusters them (knowledge.resolution) and gives
  each cluster the entity id most of its aliases had, so ids stay stable for API users.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from peewee import Case

from worker_service.database import utcnow
from worker_service.database.graph_models import (
    KgAlias,
    KgAliasKey,
    KgDecision,
    KgEntity,
    KgMention,
    KgRelation,
)
from worker_service.knowledge.mentions import NewMention, NewRelation
from worker_service.knowledge.names import Profile, in_dictionary_form
from worker_service.knowledge.resolution import Decisions, cluster

BATCH = 400


def _batches(values: Iterable[int | str]) -> Iterable[list]:
    items = sorted(set(values))
    for start in range(0, len(items), BATCH):
        yield items[start : start + BATCH]


def fold(text: str) -> str:
    """What ``q`` searches compare: lower case, ``ё`` as ``е``."""
    return text.lower().replace("ё", "е")


def remove_contribution(asset_id: str) -> dict[str, set[int]]:
    """Delete what ``asset_id`` contributed; {workspace: alias ids whose block must be resolved again}."""
    touched: dict[str, set[int]] = {}
    for workspace, alias_id in (
        KgMention.select(KgMention.workspace, KgMention.alias)
        .where(KgMention.asset == asset_id)
        .distinct()
        .tuples()
    ):
        touched.setdefault(workspace, set()).add(alias_id)
    KgRelation.delete().where(KgRelation.asset == asset_id).execute()
    KgMention.delete().where(KgMention.asset == asset_id).execute()
    for workspace, aliases in touched.items():
        entities = {
            e
            for (e,) in KgAlias.select(KgAlias.entity).where(KgAlias.id.in_(sorted(aliases))).tuples()
            if e is not None
        }
        still = {
            a
            for batch in _batches(aliases)
            for (a,) in KgMention.select(KgMention.alias)
            .where(KgMention.alias.in_(batch))
            .distinct()
            .tuples()
        }
        orphans = aliases - still
        for batch in _batches(orphans):
            KgAliasKey.delete().where(KgAliasKey.alias.in_(batch)).execute()
            KgAlias.delete().where(KgAlias.id.in_(batch)).execute()
        # the other aliases of the entities that lost some: their clusters may fall apart now
        siblings = {
            a
            for batch in _batches(entities)
            for (a,) in KgAlias.select(KgAlias.id).where(KgAlias.entity.in_(batch)).tuples()
        }
        touched[workspace] = still | siblings
        _drop_empty_entities(entities)
    return touched


def replace_contribution(
    asset_id: str, workspace: str, mentions: list[NewMention], relations: list[NewRelation]
) -> tuple[int, int]:
    """The asset's contribution becomes exactly ``mentions`` and ``relations``; (entities, relations) of it."""
    touched = remove_contribution(asset_id)
    alias_of = _aliases(workspace, {m.profile.key: m.profile for m in mentions})
    rows = [
        {
            "asset": asset_id,
            "alias": alias_of[m.profile.key],
            "workspace": workspace,
            "chunk": m.chunk,
            "surface": m.surface[:2000],
            "folded": fold(m.surface[:2000]),
            "type": m.label[:100],
            "description": m.description[:4000],
            "page": m.page,
        }
        for m in mentions
    ]
    for start in range(0, len(rows), BATCH):
        KgMention.insert_many(rows[start : start + BATCH]).execute()
    rel_rows = [
        {
            "asset": asset_id,
            "workspace": workspace,
            "chunk": r.chunk,
            "source": alias_of[mentions[r.source].profile.key],
            "target": alias_of[mentions[r.target].profile.key],
            "type": r.type[:100],
            "description": r.description[:4000],
            "weight": r.weight,
            "page": r.page,
        }
        for r in relations
    ]
    for start in range(0, len(rel_rows), BATCH):
        KgRelation.insert_many(rel_rows[start : start + BATCH]).execute()
    for other, aliases in touched.items():
        if other != workspace:
            resolve_block(other, aliases)
    resolve_block(workspace, touched.get(workspace, set()) | set(alias_of.values()))
    entity_of = {
        a: e
        for batch in _batches(alias_of.values())
        for a, e in KgAlias.select(KgAlias.id, KgAlias.entity).where(KgAlias.id.in_(batch)).tuples()
    }
    return (
        len(set(entity_of.values())),
        len({(entity_of[r["source"]], entity_of[r["target"]], r["type"]) for r in rel_rows}),
    )


def _aliases(workspace: str, profiles: dict[str, Profile]) -> dict[str, int]:
    """The alias id of each profile key in ``workspace``, creating the missing ones with their keys (three
    statements however many)."""
    found: dict[str, int] = {}
    for batch in _batches(profiles):
        found.update(
            {
                key: ident
                for ident, key in KgAlias.select(KgAlias.id, KgAlias.profile_key)
                .where(KgAlias.workspace == workspace, KgAlias.profile_key.in_(batch))
                .tuples()
            }
        )
    missing = sorted(profiles.keys() - found.keys())
    for start in range(0, len(missing), BATCH):
        rows = [
            {"workspace": workspace, "profile_key": key, "profile": profiles[key].to_json()}
            for key in missing[start : start + BATCH]
        ]
        found.update(
            {
                key: ident
                for ident, key in KgAlias.insert_many(rows)
                .returning(KgAlias.id, KgAlias.profile_key)
                .tuples()
                .execute()
            }
        )
    keys = [
        {"alias": found[key], "workspace": workspace, "key": k}
        for key in missing
        for k in sorted(profiles[key].keys())
    ]
    for start in range(0, len(keys), BATCH):
        KgAliasKey.insert_many(keys[start : start + BATCH]).execute()
    return found


def decisions_of(workspace: str) -> Decisions:
    return Decisions.of(
        (d.kind, d.keys, d.others)
        for d in KgDecision.select().where(KgDecision.workspace == workspace).order_by(KgDecision.id)
    )


def block_of(workspace: str, seeds: set[int], decisions: Decisions) -> set[int]:
    """Every alias of ``workspace`` reachable from ``seeds`` through shared blocking keys and decisions (two
    indexed statements per round, a round per step of distance)."""
    block = set(seeds)
    frontier = set(seeds)
    seen_keys: set[str] = set()
    decided = decisions.keys()
    while frontier:
        # two plain index lookups: PostgreSQL planned the one with a subquery as a scan (12 s at 10^4 documents)
        keys = {
            k
            for batch in _batches(frontier)
            for (k,) in KgAliasKey.select(KgAliasKey.key).where(KgAliasKey.alias.in_(batch)).tuples()
        } - seen_keys
        seen_keys |= keys
        reached = {
            a
            for batch in _batches(keys)
            for (a,) in KgAliasKey.select(KgAliasKey.alias)
            .where(KgAliasKey.workspace == workspace, KgAliasKey.key.in_(batch))
            .tuples()
        }
        if decided:
            profile_keys = {
                k
                for batch in _batches(frontier)
                for (k,) in KgAlias.select(KgAlias.profile_key).where(KgAlias.id.in_(batch)).tuples()
            }
            related = {k for group in decisions.merges if group & profile_keys for k in group}
            related |= {k for pair in decisions.apart if pair & profile_keys for k in pair}
            reached |= {
                a
                for batch in _batches(related)
                for (a,) in KgAlias.select(KgAlias.id)
                .where(KgAlias.workspace == workspace, KgAlias.profile_key.in_(batch))
                .tuples()
            }
        frontier = reached - block
        block |= frontier
    return block


def resolve_block(workspace: str, seeds: set[int]) -> None:
    """Cluster the block of ``seeds`` again and store the entities (see the module docstring)."""
    if not seeds:
        return
    decisions = decisions_of(workspace)
    block = block_of(workspace, seeds, decisions)
    rows = [
        row
        for batch in _batches(block)
        for row in KgAlias.select(KgAlias.id, KgAlias.profile_key, KgAlias.profile, KgAlias.entity)
        .where(KgAlias.id.in_(batch))
        .tuples()
    ]
    if not rows:
        return
    alias_id = {key: ident for ident, key, _p, _e in rows}
    before = {key: entity for _i, key, _p, entity in rows}
    clusters = cluster({key: Profile.from_json(raw) for _i, key, raw, _e in rows}, decisions)
    taken: set[int] = set()
    chosen: dict[int, int | None] = {}  # cluster index -> its entity (None: a new one)
    ordered = sorted(clusters, key=lambda c: (-len(c), min(c)))
    for index, members in enumerate(ordered):
        votes = Counter(before[k] for k in members if before[k] is not None and before[k] not in taken)
        kept = min(votes, key=lambda e: (-votes[e], e)) if votes else None
        chosen[index] = kept
        if kept is not None:
            taken.add(kept)
    new = [i for i, e in chosen.items() if e is None]
    if new:
        created = [
            e
            for (e,) in KgEntity.insert_many([{"workspace": workspace, "name": "", "type": ""}] * len(new))
            .returning(KgEntity.id)
            .tuples()
            .execute()
        ]
        chosen.update(zip(new, created, strict=True))
        taken.update(created)
    moves = {
        alias_id[k]: chosen[i] for i, members in enumerate(ordered) for k in members if before[k] != chosen[i]
    }
    for batch in _batches(moves):
        KgAlias.update(entity=Case(KgAlias.id, [(a, moves[a]) for a in batch])).where(
            KgAlias.id.in_(batch)
        ).execute()
    _drop_empty_entities({e for e in before.values() if e is not None} - taken)
    _describe_entities(taken)


def _drop_empty_entities(entities: set[int]) -> None:
    for batch in _batches(entities):
        used = {
            e for (e,) in KgAlias.select(KgAlias.entity).where(KgAlias.entity.in_(batch)).distinct().tuples()
        }
        empty = [e for e in batch if e not in used]
        if empty:
            KgEntity.delete().where(KgEntity.id.in_(empty)).execute()


def _describe_entities(entities: set[int]) -> None:
    """Each entity's display name (its most frequent surface form; then one in the dictionary form, ``Иванов Иван``
    rather than ``Иванова Ивана``; then the longest) and type (the majority of its mentions' labels; UNKNOWN when
    no chunk gave one)."""
    from peewee import fn

    surfaces: dict[int, Counter[str]] = {}
    labels: dict[int, Counter[str]] = {}
    for batch in _batches(entities):
        for entity, surface, label, n in (
            KgMention.select(KgAlias.entity, KgMention.surface, KgMention.type, fn.COUNT(KgMention.id))
            .join(KgAlias)
            .where(KgAlias.entity.in_(batch))
            .group_by(KgAlias.entity, KgMention.surface, KgMention.type)
            .tuples()
        ):
            surfaces.setdefault(entity, Counter())[surface] += n
            if label:
                labels.setdefault(entity, Counter())[label] += n
    now = utcnow()
    for batch in _batches(entities):
        named, typed = [], []
        for entity in batch:
            names = surfaces.get(entity, Counter())
            named.append(
                (
                    entity,
                    min(names, key=lambda s: (-names[s], not in_dictionary_form(s), -len(s), s))
                    if names
                    else "",
                )
            )
            votes = labels.get(entity, Counter())
            typed.append((entity, min(votes, key=lambda t: (-votes[t], t)) if votes else "UNKNOWN"))
        KgEntity.update(name=Case(KgEntity.id, named), type=Case(KgEntity.id, typed), updated_at=now).where(
            KgEntity.id.in_(batch)
        ).execute()
