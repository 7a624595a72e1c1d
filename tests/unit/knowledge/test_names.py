"""worker_service.knowledge.names: the probe of 36 name pairs (issue 39) and the rules behind each verdict."""

from __future__ import annotations

import pytest

from worker_service.knowledge.names import canonical_type, compatible, fold, linked, profile, translit

#: one thing however the documents spell it: (name, type, name, type)
SAME = [
    ("ООО «Ромашка»", "ORGANIZATION", "Ромашка", "COMPANY"),
    ('ООО "Ромашка"', "ORGANIZATION", "ООО «Ромашка»", "ORGANIZATION"),
    ("Ромашки", "ORGANIZATION", "Romashka LLC", "ORGANIZATION"),
    ("Общество с ограниченной ответственностью «Ромашка»", "ORGANIZATION", "ООО Ромашка", "COMPANY"),
    ("АО «Василёк»", "ORGANIZATION", "АО «Василек»", "ORGANIZATION"),
    ("Акционерное общество «Василёк»", "ORGANIZATION", "Vasilek JSC", "ORGANIZATION"),
    ("Lyutik Ltd", "COMPANY", "ООО «Лютик»", "ORGANIZATION"),
    ("И. И. Иванов", "PERSON", "Иванова Ивана Ивановича", "PERSON"),
    ("Иванов Иван Иванович", "PERSON", "Ivan Ivanov", "PERSON"),
    ("Иванов И.И.", "PERSON", "Иванов Иван", "PERSON"),
    ("Ivan Ivanov", "PERSON", "И. Иванов", "PERSON"),
    ("Сидорова Анна Викторовна", "PERSON", "Anna Sidorova", "PERSON"),
    ("Иванову Марию Петровну", "PERSON", "Maria Ivanova", "PERSON"),
    ("Петрову Петру Сергеевичу", "PERSON", "Петров П. С.", "PERSON"),
    ("Москва", "CITY", "Moscow", "PLACE"),
    ("г. Москва", "PLACE", "Москве", "LOCATION"),
    ("Санкт-Петербург", "PLACE", "СПб", "CITY"),
    ("Saint Petersburg", "PLACE", "St. Petersburg", "CITY"),
    ("договор поставки №15", "DOCUMENT", "Договору поставки № 15", "CONTRACT"),
    ("Россия", "COUNTRY", "Russian Federation", "LOCATION"),
]
#: two things however alike they look
DIFFERENT = [
    ("ООО «Ромашка-Трейд»", "ORGANIZATION", "ООО «Ромашка»", "ORGANIZATION"),
    ("Ромашка-Трейд", "COMPANY", "Romashka", "COMPANY"),
    ("П. И. Иванов", "PERSON", "И. И. Иванов", "PERSON"),
    ("Иванова Мария", "PERSON", "Иванов Иван", "PERSON"),
    ("Maria Ivanova", "PERSON", "Ivan Ivanov", "PERSON"),
    ("Иванов Пётр", "PERSON", "Иванов Иван Иванович", "PERSON"),
    ("Иванов И. П.", "PERSON", "Иванов И. И.", "PERSON"),
    ("договор № 15", "DOCUMENT", "договор № 16", "DOCUMENT"),
    ("Счёт № 45", "DOCUMENT", "Счёт № 46", "DOCUMENT"),
    ("Invoice No. 2024-117", "DOCUMENT", "Invoice No. 2024-118", "DOCUMENT"),
    ("ООО «Ромашка»", "ORGANIZATION", "АО «Ромашка»", "ORGANIZATION"),
    ("Москва", "CITY", "Москва", "PERSON"),
    ("Петров П. С.", "PERSON", "Петрова П. С.", "ORGANIZATION"),
    ("Лютик", "ORGANIZATION", "Василёк", "ORGANIZATION"),
    ("Сидорова Анна", "PERSON", "Сидоров Андрей", "PERSON"),
    ("Санкт-Петербург", "CITY", "Москва", "CITY"),
]


@pytest.mark.parametrize("a, ta, b, tb", SAME)
def test_true_variants_are_one_thing(a, ta, b, tb):
    pa, pb = profile(a, ta), profile(b, tb)
    assert compatible(pa, pb) and linked(pa, pb), (pa, pb)


@pytest.mark.parametrize("a, ta, b, tb", DIFFERENT)
def test_hard_negatives_are_two_things(a, ta, b, tb):
    pa, pb = profile(a, ta), profile(b, tb)
    assert not (compatible(pa, pb) and linked(pa, pb)), (pa, pb)


def test_two_organisations_with_different_inn_are_never_one_and_the_same_inn_always_is():
    a = profile("ООО «Ромашка»", "ORGANIZATION", (("inn", "7707083893"),))
    b = profile("ООО «Ромашка»", "ORGANIZATION", (("inn", "5003052454"),))
    c = profile("Romashka Holding", "ORGANIZATION", (("inn", "7707083893"),))
    assert not compatible(a, b)
    assert compatible(a, c) and linked(a, c)  # a hard key: equal merges whatever the names


def test_normalisation_of_quotes_dashes_yo_and_number_signs():
    assert fold("ООО „Ромашка“ — Трейд №15 ёлка") == "ооо ромашка - трейд # 15 елка"
    assert translit("ромашка") == translit("romashka") and translit("щукин") == translit("shchukin")
    assert canonical_type("company") == "ORGANIZATION" and canonical_type("City") == "PLACE"
    assert canonical_type("product") == "PRODUCT" and canonical_type(None) == ""


def test_a_profile_survives_its_json_round_trip():
    from worker_service.knowledge.names import Profile

    original = profile("Иванова Ивана Ивановича", "PERSON", (("email", "i@x.ru"),))
    assert Profile.from_json(original.to_json()) == original and original.key
