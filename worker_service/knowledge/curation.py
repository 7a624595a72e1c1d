"""Operators' corrections of the graph: merge entities, split aliases off one. Each is kept as a decision by
profile key (``KgDecision``), so it survives rebuilds, deletions and later uploads: resolution applies it every
time the block is resolved again (knowledge.resolution). Both are audited.
"""

from __future__ import annotations

from worker_service.database import AuditEntry, session
from worker_service.database.graph_models import KgAlias, KgDecision, KgEntity, KgMention
from worker_service.knowledge.graphstore import resolve_block


class CurationError(ValueError):
    """The request cannot be carried out (unknown entity, several workspaces, nothing to split); the message
    says why."""


def _aliases(entity_ids: list[int]) -> list[tuple[int, str]]:
    return list(
        KgAlias.select(KgAlias.id, KgAlias.profile_key).where(KgAlias.entity.in_(entity_ids)).tuples()
    )


def merge(entity_ids: list[int], who: str) -> int:
    """Make ``entity_ids`` one entity; its id."""
    ids = sorted(set(entity_ids))
    if len(ids) < 2:
        raise CurationError("name at least two entities to merge")
    with session(transaction=True):
        entities = list(KgEntity.select().where(KgEntity.id.in_(ids)))
        if len(entities) != len(ids):
            raise CurationError(f"unknown entity among {ids}")
        workspaces = {e.workspace for e in entities}
        if len(workspaces) != 1:
            raise CurationError("entities of different workspaces never merge")
        workspace = workspaces.pop()
        aliases = _aliases(ids)
        KgDecision.create(
            workspace=workspace, kind="merge", keys=sorted(k for _i, k in aliases), others=[], decided_by=who
        )
        resolve_block(workspace, {i for i, _k in aliases})
        merged = KgAlias.get(KgAlias.id == aliases[0][0]).entity_id
        AuditEntry.create(
            who=who,
            action="entity-merge",
            target=str(merged),
            count=len(ids),
            detail={"workspace": workspace, "entities": ids},
        )
    return int(merged)


def split(entity_id: int, surfaces: list[str], who: str) -> list[int]:
    """Take the aliases whose mentions read ``surfaces`` off ``entity_id`` into an entity of their own; the ids
    of the entities afterwards, the one that kept the other aliases first (ids go to the larger cluster)."""
    wanted = {s.strip() for s in surfaces if s.strip()}
    with session(transaction=True):
        entity = KgEntity.get_or_none(KgEntity.id == entity_id)
        if entity is None:
            raise CurationError(f"unknown entity {entity_id}")
        aliases = dict(_aliases([entity_id]))
        moving = {
            alias
            for (alias,) in KgMention.select(KgMention.alias)
            .where(KgMention.alias.in_(sorted(aliases)), KgMention.surface.in_(sorted(wanted)))
            .tuples()
        }
        if not moving or moving == set(aliases):
            raise CurationError("name some, not all, of the entity's aliases")
        keys = sorted(aliases[a] for a in moving)
        others = sorted(aliases[a] for a in aliases.keys() - moving)
        KgDecision.create(workspace=entity.workspace, kind="split", keys=keys, others=others, decided_by=who)
        resolve_block(entity.workspace, set(aliases))
        entity_of = dict(
            KgAlias.select(KgAlias.id, KgAlias.entity).where(KgAlias.id.in_(sorted(aliases))).tuples()
        )
        after = list(
            dict.fromkeys(
                [entity_of[a] for a in sorted(aliases.keys() - moving)]
                + [entity_of[a] for a in sorted(moving)]
            )
        )
        AuditEntry.create(
            who=who,
            action="entity-split",
            target=str(entity_id),
            count=len(moving),
            detail={"workspace": entity.workspace, "aliases": sorted(wanted), "entities": after},
        )
    return [int(e) for e in after]
