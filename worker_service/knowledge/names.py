"""What a name says about the thing it names, deterministically, for Russian and English: an entity *profile*.

A mention's surface form (``ООО «Ромашка»``, ``Ромашки``, ``Romashka LLC``; ``И. И. Иванов``, ``Иванова Ивана
Ивановича``, ``Ivan Ivanov``) becomes a :class:`Profile`:

* ``name_key``: Unicode NFKC, case folded, ``ё`` -> ``е``, every quote form removed anywhere, every dash form as
  ``-``, legal forms (ООО/АО/ПАО/ЗАО/ОАО/ИП/LLC/Ltd/JSC/GmbH/Inc and their long forms) and ``г.``/``город`` taken
  out, each Russian word in its dictionary form (pymorphy3);
* ``translit``: the name key in a Latin spelling squashed to what survives transliteration differences, so
  ``Ромашка`` meets ``Romashka``; ``place``: the canonical key of a place with exonyms and abbreviations
  (``Москва`` / ``Moscow``, ``Санкт-Петербург`` / ``СПб`` / ``Saint Petersburg``);
* ``legal``: the class of the legal form (``ООО`` = ``LLC`` = ``Ltd``), ``numbers``: every number in the name
  (``договор № 15`` is not ``№ 16``), ``identifiers``: ИНН, ОГРН, e-mail, phone found next to the mention;
* ``kind``: PERSON, ORGANIZATION, PLACE, DOCUMENT, OTHER (the model's labels through a synonym map) or ``""``
  (unknown: a relation endpoint the model did not list); ``person``: surname, first name or initial,
  patronymic initial and gender, for people.

:func:`compatible` says whether two profiles may be one thing (nothing contradicts it), :func:`linked` whether
they positively are (a shared key: name, spelling, place, identifier, or a person's surname with initials
that agree); :meth:`Profile.keys` are the keys a new mention is looked up by (blocking: never a scan).
"""

from __future__ import annotations

import functools
import json
import re
import unicodedata
from dataclasses import asdict, dataclass
from typing import Any

KINDS = ("PERSON", "ORGANIZATION", "PLACE", "DOCUMENT")
#: the model's type labels, upper-cased, that name one of KINDS; any other label is kept as it is (kind OTHER)
TYPE_SYNONYMS = {
    **dict.fromkeys(
        (
            "PERSON",
            "PEOPLE",
            "INDIVIDUAL",
            "HUMAN",
            "PER",
            "ЧЕЛОВЕК",
            "ПЕРСОНА",
            "ЛИЦО",
            "PERSONA",
            "EMPLOYEE",
            "SIGNATORY",
            "DIRECTOR",
            "CONTACT_PERSON",
        ),
        "PERSON",
    ),
    **dict.fromkeys(
        (
            "ORGANIZATION",
            "ORGANISATION",
            "ORG",
            "COMPANY",
            "CORPORATION",
            "FIRM",
            "BUSINESS",
            "ENTERPRISE",
            "INSTITUTION",
            "BANK",
            "AGENCY",
            "COUNTERPARTY",
            "VENDOR",
            "SUPPLIER",
            "LEGAL_ENTITY",
            "ОРГАНИЗАЦИЯ",
            "КОМПАНИЯ",
            "ЮРЛИЦО",
            "КОНТРАГЕНТ",
        ),
        "ORGANIZATION",
    ),
    **dict.fromkeys(
        (
            "PLACE",
            "LOCATION",
            "LOC",
            "CITY",
            "TOWN",
            "COUNTRY",
            "REGION",
            "GPE",
            "GEO",
            "ГОРОД",
            "СТРАНА",
            "МЕСТО",
            "РЕГИОН",
        ),
        "PLACE",
    ),
    **dict.fromkeys(
        ("DOCUMENT", "CONTRACT", "AGREEMENT", "INVOICE", "ДОКУМЕНТ", "ДОГОВОР", "СЧЕТ"), "DOCUMENT"
    ),
}

_QUOTES = "\"'`«»„“”‟‘’‚‛‹›〝〞＂"
_DASHES = "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
_TOKEN = re.compile(r"[^\W_]+(?:-[^\W_]+)*\.?", re.UNICODE)
_INITIALS = re.compile(r"^([A-Za-zА-Яа-яЁё])\.$|^([A-ZА-ЯЁ])$")

#: legal forms: token sequences (dictionary forms) and the class they belong to
_LEGAL_PHRASES: list[tuple[tuple[str, ...], str]] = sorted(
    [
        (("общество", "с", "ограниченный", "ответственность"), "llc"),
        (("публичный", "акционерный", "общество"), "jsc"),
        (("закрытый", "акционерный", "общество"), "jsc"),
        (("открытый", "акционерный", "общество"), "jsc"),
        (("непубличный", "акционерный", "общество"), "jsc"),
        (("акционерный", "общество"), "jsc"),
        (("индивидуальный", "предприниматель"), "ip"),
        (("limited", "liability", "company"), "llc"),
        (("public", "joint", "stock", "company"), "jsc"),
        (("joint", "stock", "company"), "jsc"),
        (("joint-stock", "company"), "jsc"),
        *[((word,), "llc") for word in ("ооо", "llc", "ltd", "limited", "l.l.c", "ooo")],
        *[
            ((word,), "jsc")
            for word in ("ао", "пао", "зао", "оао", "jsc", "pjsc", "cjsc", "ojsc", "ao", "pao", "zao", "oao")
        ],
        ((("ип",), "ip")),
        (("gmbh",), "gmbh"),
        (("ag",), "ag"),
        (("plc",), "plc"),
        *[((word,), "inc") for word in ("inc", "incorporated", "corp", "corporation")],
    ],
    key=lambda item: -len(item[0]),
)
#: words that say what kind of place, not which: dropped from place names
_PLACE_WORDS = {"г", "г.", "город", "city", "гор", "гор."}

#: forms of address: the gender they say ("" for either)
_HONORIFICS = {
    "mr": "m",
    "mister": "m",
    "sir": "m",
    "г-н": "m",
    "господин": "m",
    "ms": "f",
    "mrs": "f",
    "miss": "f",
    "madam": "f",
    "г-жа": "f",
    "госпожа": "f",
    "dr": "",
    "prof": "",
}
#: places with exonyms and abbreviations: every spelling -> one canonical key (compared by translit key)
_PLACES = {
    "moskva": ("москва", "moscow", "moskau", "мск", "msk"),
    "sankt-peterburg": (
        "санкт-петербург",
        "спб",
        "питер",
        "петербург",
        "saint petersburg",
        "st petersburg",
        "st. petersburg",
        "saint-petersburg",
        "st.petersburg",
        "spb",
        "sankt-peterburg",
    ),
    "rossia": (
        "россия",
        "рф",
        "российский федерация",
        "russia",
        "russian federation",
        "the russian federation",
    ),
    "kiev": ("киев", "kyiv", "kiev"),
    "ekaterinburg": ("екатеринбург", "yekaterinburg", "ekaterinburg"),
    "nizhni novgorod": ("нижний новгород", "nizhny novgorod", "nizhniy novgorod"),
    "germania": ("германия", "germany", "deutschland"),
    "kitai": ("китай", "china"),
    "ssha": ("сша", "usa", "united states", "united states of america", "соединенный штат америка"),
}

_TRANSLIT = str.maketrans(
    {
        "а": "a",
        "б": "b",
        "в": "v",
        "г": "g",
        "д": "d",
        "е": "e",
        "ё": "e",
        "ж": "zh",
        "з": "z",
        "и": "i",
        "й": "i",
        "к": "k",
        "л": "l",
        "м": "m",
        "н": "n",
        "о": "o",
        "п": "p",
        "р": "r",
        "с": "s",
        "т": "t",
        "у": "u",
        "ф": "f",
        "х": "kh",
        "ц": "ts",
        "ч": "ch",
        "ш": "sh",
        "щ": "shch",
        "ъ": "",
        "ы": "y",
        "ь": "",
        "э": "e",
        "ю": "yu",
        "я": "ya",
    }
)
#: spellings that differ between transliteration schemes, squashed to one (order matters)
_SQUASH = [
    ("shch", "sh"),
    ("sch", "sh"),
    ("tch", "ch"),
    ("kh", "h"),
    ("ks", "x"),
    ("ts", "c"),
    ("tz", "c"),
    ("ph", "f"),
    ("w", "v"),
    ("ck", "k"),
    ("q", "k"),
    ("zh", "z"),
    ("yu", "iu"),
    ("ya", "ia"),
    ("yo", "io"),
    ("ye", "e"),
    ("y", "i"),
    ("j", "i"),
    ("ii", "i"),
]
_FEMININE_LATIN = [
    ("skaya", "skii"),
    ("tskaya", "tskii"),
    ("ova", "ov"),
    ("eva", "ev"),
    ("ina", "in"),
    ("aya", "ii"),
]


def translit(text: str) -> str:
    """``text`` (already folded) in a squashed Latin spelling: ``ромашка`` and ``romashka`` give one key."""
    latin = text.translate(_TRANSLIT)
    for old, new in _SQUASH:
        latin = latin.replace(old, new)
    latin = re.sub(r"(?:(?<=\s)|^)ie", "e", latin)  # Yekaterinburg / Екатеринбург, Yevgeny / Евгений
    return re.sub(r"(.)\1+", r"\1", latin)


@functools.cache
def _morph() -> Any:
    import pymorphy3  # loaded on first use: ~40 MB of dictionaries, only where names are resolved

    return pymorphy3.MorphAnalyzer()


@functools.lru_cache(maxsize=100_000)
def _parses(word: str) -> tuple[tuple[str, frozenset[str]], ...]:
    """The dictionary forms and grammemes pymorphy3 gives a Cyrillic word, best first."""
    return tuple(
        (p.normal_form.replace("ё", "е"), frozenset(p.tag.grammemes)) for p in _morph().parse(word)[:4]
    )


def _cyrillic(word: str) -> bool:
    return any("а" <= c <= "я" or c == "ё" for c in word)


def lemma(word: str) -> str:
    return _parses(word)[0][0] if _cyrillic(word) else word


_NUMBER_SIGN = re.compile(r"(?:#|\bno\.?|\bnr\.?|\bn\.?)\s*(?=\d)")


def in_dictionary_form(text: str) -> bool:
    """Every Cyrillic word of ``text`` is its own dictionary form (a nominative: ``Ромашка``, not ``Ромашки``)."""
    return all(lemma(word) == word for word in re.findall(r"[а-яё]+", fold(text)))


def fold(text: str) -> str:
    """NFKC, case folded, ``ё`` -> ``е``, quotes removed anywhere, dashes as ``-``, a number sign in any spelling
    (``№15``, ``№ 15``, ``No. 15``, ``#15``) as ``# 15``."""
    text = unicodedata.normalize("NFKC", text.replace("№", " # ")).casefold().replace("ё", "е")
    text = text.translate({ord(q): " " for q in _QUOTES}).translate({ord(d): "-" for d in _DASHES})
    return re.sub(r"\s+", " ", _NUMBER_SIGN.sub("# ", text)).strip()


@dataclass(frozen=True)
class PersonName:
    surname: str  # translit key of the dictionary (masculine) form
    first: str = ""  # translit key of the first name, when written out
    first_initial: str = ""
    patronymic_initial: str = ""
    gender: str = ""  # "m" | "f" | "" (unknown)


@dataclass(frozen=True)
class Profile:
    """What a name, its type and the identifiers next to it say (see the module docstring)."""

    name_key: str
    translit: str
    kind: str = ""
    place: str = ""
    legal: str = ""
    numbers: tuple[str, ...] = ()
    identifiers: tuple[tuple[str, str], ...] = ()
    person: PersonName | None = None
    label: str = ""  # the model's type label, canonical (ORGANIZATION for COMPANY), "" when unknown

    @property
    def key(self) -> str:
        """One string per distinct profile (within a workspace, the identity of an alias)."""
        ids = ",".join(f"{k}:{v}" for k, v in self.identifiers)
        return f"{self.kind}|{self.legal}|{self.name_key}|{ids}"

    def keys(self) -> set[str]:
        """Blocking keys: every profile this one can be linked to shares one of them."""
        keys = {f"n:{self.name_key}", f"t:{self.translit}"}
        if self.place:
            keys.add(f"p:{self.place}")
        keys.update(f"{kind}:{value}" for kind, value in self.identifiers)
        if self.person is not None:
            keys.add(f"s:{self.person.surname}")
        return {k for k in keys if not k.endswith(":")}

    def specificity(self) -> tuple[int, int, int]:
        """Most specific first (identifiers, a person written out in full, a longer name): the order in which a
        block's profiles are clustered, so that vague ones join what is already certain."""
        person = self.person
        full = (
            0
            if person is None
            else (bool(person.first) + bool(person.patronymic_initial) + bool(person.gender))
        )
        return (len(self.identifiers), full, len(self.name_key))

    def to_json(self) -> str:
        data = asdict(self)
        return json.dumps(data, ensure_ascii=False, sort_keys=True)

    @classmethod
    def from_json(cls, raw: str) -> Profile:
        data = json.loads(raw)
        person = PersonName(**data.pop("person")) if data.get("person") else None
        data.pop("person", None)
        return cls(
            **{
                **data,
                "numbers": tuple(data["numbers"]),
                "identifiers": tuple(tuple(i) for i in data["identifiers"]),
            },
            person=person,
        )


def canonical_type(label: str | None) -> str:
    """The model's label through the synonym map (COMPANY -> ORGANIZATION, CITY -> PLACE); "" when unknown."""
    if not label:
        return ""
    upper = re.sub(r"[\s\-]+", "_", label.strip().upper())
    return TYPE_SYNONYMS.get(upper, upper)


def _kind(label: str) -> str:
    return label if label in KINDS else ("OTHER" if label else "")


def _legal(lemmas: list[str]) -> tuple[list[str], str]:
    """``lemmas`` without their legal form, and its class ("" if none)."""
    found = ""
    out: list[str] = []
    i = 0
    while i < len(lemmas):
        for phrase, cls in _LEGAL_PHRASES:
            if tuple(lemmas[i : i + len(phrase)]) == phrase:
                found = found or cls
                i += len(phrase)
                break
        else:
            out.append(lemmas[i])
            i += 1
    return out, found


@functools.cache
def _place_index() -> dict[str, str]:
    index: dict[str, str] = {}
    for canonical, spellings in _PLACES.items():
        for spelling in spellings:
            words = [lemma(w) for w in fold(spelling).replace(".", ". ").split()]
            index[translit(" ".join(w.rstrip(".") for w in words))] = canonical
    return index


def _person(tokens: list[str], kind: str) -> PersonName | None:
    """Surname, first name or initial, patronymic initial and gender of a person's name, or None when it is
    not one (kind known and not PERSON, or nothing in it looks like a person's name)."""
    if kind and kind not in ("PERSON", "OTHER"):
        return None
    initials: list[str] = []
    words: list[str] = []
    gender = ""
    for token in tokens:
        honorific = _HONORIFICS.get(fold(token).rstrip("."))
        if honorific is not None:  # Ms., г-н: a gender, not a name
            gender = gender or honorific
            continue
        letters = [p for p in token.replace(".", ". ").split() if p]
        if (
            all(_INITIALS.match(p) or (len(p.rstrip(".")) == 1 and p.endswith(".")) for p in letters)
            and letters
        ):
            initials.extend(translit(fold(p.rstrip(".")))[:1] for p in letters)
        elif token.rstrip(".").isalpha() or "-" in token:
            words.append(token.rstrip("."))
    if not words:
        return None
    latin = all(not _cyrillic(fold(w)) for w in words)
    parsed = [_parses(fold(w)) if _cyrillic(fold(w)) else () for w in words]

    def has(index: int, grammeme: str) -> bool:
        return any(grammeme in grams for _, grams in parsed[index])

    def form(index: int, grammeme: str) -> tuple[str, frozenset[str]]:
        found = [(n, g) for n, g in parsed[index] if grammeme in g]
        return (
            found[0] if found else (parsed[index][0] if parsed[index] else (fold(words[index]), frozenset()))
        )

    # Russian order is "Surname First Patronymic" or "First Patronymic Surname": the patronymic, when there
    # is one, says which word is which; else a word whose best reading is a first name is the first name
    first_at = patronymic_at = surname_at = -1
    patronymics = [i for i in range(len(words)) if has(i, "Patr")]
    if patronymics:
        patronymic_at = patronymics[-1]
        first_at = patronymic_at - 1
        surname_at = patronymic_at + 1 if patronymic_at + 1 < len(words) else patronymic_at - 2
    elif latin and len(words) >= 2 and not initials:
        first_at, surname_at = 0, len(words) - 1  # "Ivan Ivanov"
    elif len(words) >= 2:
        names = [i for i in range(len(words)) if parsed[i] and "Name" in parsed[i][0][1]] or [
            i for i in range(len(words)) if has(i, "Name") and not has(i, "Surn")
        ]
        first_at = names[0] if names else -1
        others = [i for i in range(len(words)) if i != first_at]
        surname_at = others[0] if others else -1
    else:
        surname_at = 0
    tagged = patronymic_at >= 0 or any(has(i, "Surn") or has(i, "Name") for i in range(len(words)))
    if kind != "PERSON" and not tagged and not initials:
        return None
    if surname_at < 0:
        return None
    surname = form(surname_at, "Surn")[0]
    first, first_grams = form(first_at, "Name") if first_at >= 0 else ("", frozenset())
    patronymic, patronymic_grams = form(patronymic_at, "Patr") if patronymic_at >= 0 else ("", frozenset())
    if not gender:
        gender = (
            ("f" if "femn" in patronymic_grams else "m")
            if patronymic
            else (
                "f"
                if "femn" in first_grams and "masc" not in first_grams
                else "m"
                if "masc" in first_grams
                else ""
            )
        )
    if latin:
        for ending, masculine in _FEMININE_LATIN:
            if surname.endswith(ending) and len(surname) > len(ending) + 2:
                surname, gender = surname[: -len(ending)] + masculine, gender or "f"
                break
    first_key = translit(fold(first)) if first else ""
    first_initial = first_key[:1] or (initials[0] if initials else "")
    patronymic_initial = (
        translit(fold(patronymic))[:1] if patronymic else (initials[1] if len(initials) > 1 else "")
    )
    return PersonName(translit(fold(surname)), first_key, first_initial, patronymic_initial, gender)


def profile(surface: str, label: str | None = None, identifiers: tuple[tuple[str, str], ...] = ()) -> Profile:
    """The profile of a mention: its surface form, the model's type label, the identifiers found next to it."""
    canonical = canonical_type(label)
    kind = _kind(canonical)
    folded = fold(surface)
    tokens = _TOKEN.findall(folded)
    numbers = tuple(re.findall(r"\d+", folded))
    lemmas = [lemma(t.rstrip(".")) if _cyrillic(t) else t.rstrip(".") for t in tokens]
    words, legal = _legal(lemmas)
    if kind in ("PLACE", "OTHER", ""):
        words = [w for w in words if w not in _PLACE_WORDS] or words
    name_key = " ".join(words) or folded
    key = translit(name_key)
    place = _place_index().get(key, "") if kind in ("PLACE", "OTHER", "") else ""
    raw_tokens = [
        t
        for t in re.findall(
            r"[^\s,]+", unicodedata.normalize("NFKC", surface).translate({ord(q): " " for q in _QUOTES})
        )
    ]
    person = (
        _person(
            [
                t
                for t in raw_tokens
                if fold(t.rstrip(".")) not in {p[0] for p, _ in _LEGAL_PHRASES if len(p) == 1}
            ],
            kind,
        )
        if not legal and not numbers
        else None
    )
    if person is not None and kind in ("", "OTHER") and not (person.first or person.first_initial):
        person = None  # a lone word of unknown kind is a name, not a person
    return Profile(
        name_key=name_key,
        translit=key,
        kind="PERSON" if person is not None and not kind else kind,
        place=place,
        legal=legal,
        numbers=numbers,
        identifiers=tuple(sorted(set(identifiers))),
        person=person,
        label=canonical or ("PERSON" if person is not None and not kind else ""),
    )


def _persons_agree(a: PersonName, b: PersonName) -> bool:
    if a.surname != b.surname:
        return False
    if a.gender and b.gender and a.gender != b.gender:
        return False
    if a.first and b.first and a.first != b.first:
        return False
    if a.first_initial and b.first_initial and a.first_initial != b.first_initial:
        return False
    return not (
        a.patronymic_initial and b.patronymic_initial and a.patronymic_initial != b.patronymic_initial
    )


def compatible(a: Profile, b: Profile) -> bool:
    """Nothing says these are two different things (types, legal forms, numbers, identifiers, people)."""
    if a.kind in KINDS and b.kind in KINDS and a.kind != b.kind:
        return False
    if a.legal and b.legal and a.legal != b.legal:
        return False
    if (a.numbers or b.numbers) and a.numbers != b.numbers:
        return False
    ours, theirs = dict_of(a.identifiers), dict_of(b.identifiers)
    for kind in ours.keys() & theirs.keys():
        if not ours[kind] & theirs[kind]:
            return False
    if a.person is not None and b.person is not None:
        return _persons_agree(a.person, b.person)
    return not ((a.person is None) != (b.person is None) and a.kind == b.kind == "PERSON")


def linked(a: Profile, b: Profile) -> bool:
    """These are positively one thing, given they are compatible: the same name, spelling, place or identifier,
    or people with the same surname whose first names or initials agree."""
    if set(a.identifiers) & set(b.identifiers):
        return True
    if a.person is not None and b.person is not None:
        # the same surname alone is not enough once both name someone more precisely and say nothing alike
        return _persons_agree(a.person, b.person) and (
            not (a.person.first_initial and b.person.first_initial)
            or a.person.first_initial == b.person.first_initial
        )
    if a.place and a.place == b.place:
        return True
    return a.name_key == b.name_key or (len(a.translit) >= 3 and a.translit == b.translit)


def dict_of(identifiers: tuple[tuple[str, str], ...]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for kind, value in identifiers:
        out.setdefault(kind, set()).add(value)
    return out
