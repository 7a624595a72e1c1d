"""Entity resolution of one block of profiles: deterministic, and the same whatever order they arrived in.

:func:`cluster` takes the distinct profiles of a *block* (every profile reachable from the ones that changed
through shared blocking keys and curation decisions: nothing outside can be linked to anything inside) and
returns their clusters. The profiles are taken most specific first (``Profile.specificity``, then the key), so
the result depends on the set alone: the graph after any sequence of uploads, re-uploads and deletions is the
graph built from scratch from what remains.

A profile joins a cluster when it is *linked* to one of its members (names.linked: a shared name, spelling,
place, identifier, or a person's surname with initials that agree) and *compatible* with every member
(names.compatible: no chaining through a vague middle, so ``И. Иванов`` cannot join ``П. И. Иванов`` to
``И. И. Иванов``). A profile that fits several clusters joins them only when they are compatible with each other
too; otherwise it stays apart (undecided is better than wrong). Then the operators' decisions apply: a split
(``others`` apart from ``keys``) is a pair of profiles that are never compatible; a merge joins the clusters of
its profiles whatever their names say.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from worker_service.knowledge.names import Profile, compatible, linked


@dataclass(frozen=True)
class Decisions:
    """The operators' decisions of a workspace, by profile key: ``merges`` (groups that are one thing) and
    ``apart`` (pairs that never are)."""

    merges: tuple[frozenset[str], ...] = ()
    apart: frozenset[frozenset[str]] = field(default_factory=frozenset)

    @classmethod
    def of(cls, rows: Iterable[tuple[str, list[str], list[str]]]) -> Decisions:
        """From stored decisions (kind, keys, others), oldest first: a later decision overrides what an earlier
        one said about the same profiles (a split takes its profiles out of earlier merges; a merge lifts
        earlier splits between its profiles)."""
        merges: list[set[str]] = []
        apart: set[frozenset[str]] = set()
        for kind, keys, others in rows:
            if kind == "merge":
                group = set(keys)
                apart = {pair for pair in apart if not pair <= group}
                merges.append(group)
            elif kind == "split":
                moving, staying = set(keys), set(others)
                merges = [group - moving if group & moving and group & staying else group for group in merges]
                apart.update(frozenset((a, b)) for a in moving for b in staying if a != b)
        return cls(tuple(frozenset(g) for g in merges if len(g) > 1), frozenset(apart))

    def keys(self) -> set[str]:
        return {key for group in self.merges for key in group} | {key for pair in self.apart for key in pair}


def cluster(profiles: Mapping[str, Profile], decisions: Decisions = Decisions()) -> list[set[str]]:
    """The entities of a block: sets of profile keys (``profiles`` maps each key to its profile)."""
    order = sorted(profiles, key=lambda k: (tuple(-n for n in profiles[k].specificity()), k))

    def fits(a: str, b: str) -> bool:
        return frozenset((a, b)) not in decisions.apart and compatible(profiles[a], profiles[b])

    clusters: list[list[str]] = []
    for key in order:
        candidates = [
            c
            for c in clusters
            if any(linked(profiles[key], profiles[m]) for m in c) and all(fits(key, m) for m in c)
        ]
        if len(candidates) == 1:
            candidates[0].append(key)
        elif candidates and all(
            fits(a, b)
            for i, first in enumerate(candidates)
            for second in candidates[i + 1 :]
            for a in first
            for b in second
        ):
            joined = [m for c in candidates for m in c] + [key]
            clusters = [c for c in clusters if not any(c is d for d in candidates)] + [joined]
        else:
            clusters.append([key])  # new, or undecided between clusters that are not one thing
    return _merged(clusters, decisions)


def _merged(clusters: list[list[str]], decisions: Decisions) -> list[set[str]]:
    """The clusters with every merge decision applied (a union over the clusters its profiles are in)."""
    parent = list(range(len(clusters)))
    where = {key: i for i, c in enumerate(clusters) for key in c}

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for group in decisions.merges:
        present = sorted(where[k] for k in group if k in where)
        for other in present[1:]:
            parent[root(other)] = root(present[0])
    out: dict[int, set[str]] = {}
    for i, c in enumerate(clusters):
        out.setdefault(root(i), set()).update(c)
    return sorted(out.values(), key=lambda s: min(s))
