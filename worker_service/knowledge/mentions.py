"""From an asset's chunk extractions to mentions with provenance: the page of each surface form, the identifiers
written next to it, relations between mentions (never between display names).

``mentions_of(text, spans, extractions)`` is pure and makes no LLM call: the chunk results are cached
(``llm_chunk``), so an asset's contribution to the graph can be derived again at any time for free.

* Page: where the surface form occurs in its chunk (the last ``<!-- page N -->``, sheet or slide marker before
  it); when it does not occur as written, where its longest word's stem does; only when neither occurs, the
  chunk's first page. ``None`` for unpaged text.
* Identifiers: ИНН (10 or 12 digits) and ОГРН/ОГРНИП (13 or 15) after their label and with a valid checksum,
  e-mail addresses, phone numbers; each belongs to the nearest mention of a person or organisation written
  before it in the chunk (within ``IDENTIFIER_REACH`` characters).
* Relations: each endpoint is the chunk's mention of that name (the same surface, or a linked profile); a name
  the model did not list becomes a mention of unknown type, resolved like any other (never a placeholder node).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from worker_service import identifiers
from worker_service.knowledge.graph import Extraction
from worker_service.knowledge.names import Profile, canonical_type, linked, profile

IDENTIFIER_REACH = 200
_PAGE_MARKER = re.compile(r"<!-- (?:page|sheet|slide) (\d+)(?::[^\n]*)? -->")
_INN = re.compile(r"(?:ИНН|INN|TIN)[^\d\n]{0,15}?(\d{12}|\d{10})(?!\d)", re.I)
_OGRN = re.compile(r"(?:ОГРНИП|ОГРН|OGRNIP|OGRN|PSRN)[^\d\n]{0,15}?(\d{15}|\d{13})(?!\d)", re.I)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-zа-я]{2,}", re.I)
_PHONE = re.compile(
    r"(?<![\w+])(?:\+7|8|\+\d{1,3})[\s\-]?\(?\d{3}\)?[\s\-]?\d{3}[\s\-]?\d{2}[\s\-]?\d{2}(?!\d)"
)
_SEARCH = str.maketrans(
    {
        **{ord(q): '"' for q in "«»„“”‟‘’‚‛‹›＂'"},
        **{ord(d): "-" for d in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212"},
        ord("ё"): "е",
        ord("Ё"): "е",
    }
)


@dataclass(frozen=True)
class NewMention:
    chunk: int
    surface: str
    label: str  # canonical type label, "" when unknown
    description: str
    page: int | None
    profile: Profile


@dataclass(frozen=True)
class NewRelation:
    chunk: int
    source: int  # index of a NewMention
    target: int
    type: str
    description: str
    weight: float
    page: int | None


def identifiers_in(text: str) -> list[tuple[int, str, str]]:
    """(offset, kind, value) of every identifier in ``text``."""
    found = [(m.start(), "inn", m.group(1)) for m in _INN.finditer(text) if identifiers.inn_valid(m.group(1))]
    found += [
        (m.start(), "ogrn", m.group(1)) for m in _OGRN.finditer(text) if identifiers.ogrn_valid(m.group(1))
    ]
    found += [(m.start(), "email", identifiers.email(m.group(0))) for m in _EMAIL.finditer(text)]
    found += [(m.start(), "phone", identifiers.phone(m.group(0))) for m in _PHONE.finditer(text)]
    return sorted(found)


def _page_at(markers: list[tuple[int, int]], offset: int) -> int | None:
    page = None
    for at, number in markers:
        if at > offset:
            break
        page = number
    return page


def _occurrences(haystack: str, surface: str) -> list[int]:
    """Offsets of ``surface`` in ``haystack`` (both searched lower-cased, quotes and dashes alike); else of the
    stem of its longest word (a case form: ``Ромашки`` where the text says ``Ромашка``)."""
    needle = surface.translate(_SEARCH).lower().strip()
    found = [m.start() for m in re.finditer(re.escape(needle), haystack)] if needle else []
    if found:
        return found
    words = sorted(re.findall(r"[^\W\d_]{4,}", needle), key=len, reverse=True)
    if not words:
        return []
    stem = words[0][: max(4, len(words[0]) - 2)]
    return [m.start() for m in re.finditer(r"(?<!\w)" + re.escape(stem), haystack)]


def mentions_of(
    text: str, spans: list[tuple[int, int]], extractions: list[Extraction | None]
) -> tuple[list[NewMention], list[NewRelation]]:
    """The mentions and relations of an asset (see the module docstring); ``extractions[i]`` is chunk ``i``'s
    (None: its output stayed invalid)."""
    markers = [(m.start(), int(m.group(1))) for m in _PAGE_MARKER.finditer(text)]
    lowered = text.translate(_SEARCH).lower()
    mentions: list[NewMention] = []
    relations: list[NewRelation] = []
    for chunk, ((start, end), extraction) in enumerate(zip(spans, extractions, strict=True)):
        if extraction is None:
            continue
        haystack = lowered[start:end]
        fallback = _page_at(markers, start) if markers else None
        listed: dict[tuple[str, str], tuple[str, str, list[int]]] = {}
        for entity in extraction.entities:
            surface = entity.name.strip()
            label = canonical_type(entity.type)
            listed.setdefault(
                (surface.casefold(), label),
                (surface, entity.description.strip(), _occurrences(haystack, surface)),
            )
        owners = _identifier_owners(haystack, listed)
        first = len(mentions)
        for (folded, label), (surface, description, at) in listed.items():
            page = _page_at(markers, start + at[0]) if markers and at else fallback
            ids = tuple(sorted(owners.get((folded, label), ())))
            mentions.append(
                NewMention(chunk, surface, label, description, page, profile(surface, label, ids))
            )
        for relation in extraction.relations:
            ends = []
            for name in (relation.source, relation.target):
                index = _endpoint(mentions, first, name.strip())
                if index is None:  # a name the model did not list: a mention of unknown type
                    at = _occurrences(haystack, name)
                    page = _page_at(markers, start + at[0]) if markers and at else fallback
                    mentions.append(NewMention(chunk, name.strip(), "", "", page, profile(name.strip())))
                    index = len(mentions) - 1
                ends.append(index)
            relations.append(
                NewRelation(
                    chunk,
                    ends[0],
                    ends[1],
                    canonical_type(relation.type) or "RELATED_TO",
                    relation.description.strip(),
                    relation.weight,
                    mentions[ends[0]].page,
                )
            )
    return mentions, relations


def _identifier_owners(
    haystack: str, listed: dict[tuple[str, str], tuple[str, str, list[int]]]
) -> dict[tuple[str, str], set[tuple[str, str]]]:
    """Each identifier of the chunk, given to the nearest person or organisation written before it."""
    spots = sorted(
        (offset, key)
        for key, (_s, _d, at) in listed.items()
        if key[1] in ("PERSON", "ORGANIZATION", "")
        for offset in at
    )
    owners: dict[tuple[str, str], set[tuple[str, str]]] = {}
    for offset, kind, value in identifiers_in(haystack):
        before = [(at, key) for at, key in spots if at <= offset and offset - at <= IDENTIFIER_REACH]
        if before:
            owners.setdefault(before[-1][1], set()).add((kind, value))
    return owners


def _endpoint(mentions: list[NewMention], first: int, name: str) -> int | None:
    """The chunk's mention (from index ``first``) that ``name`` refers to: the same surface, else a linked profile."""
    folded = name.casefold()
    for index in range(first, len(mentions)):
        if mentions[index].surface.casefold() == folded:
            return index
    wanted = profile(name)
    for index in range(first, len(mentions)):
        if mentions[index].profile.name_key == wanted.name_key or linked(wanted, mentions[index].profile):
            return index
    return None
