"""Identifiers of people and organisations as the graph and the CRM ledger both key them: ИНН and ОГРН with
their checksums, e-mail addresses and phone numbers in one normal form each."""

from __future__ import annotations

import re

#: the CRM ledger's rows that name a Kommo contact by one of its identifiers (key ``email:...`` or ``phone:+...``)
CONTACT_IDENTIFIER = "contact-identifier"


def inn_valid(digits: str) -> bool:
    """A Russian taxpayer number (ИНН): 10 digits (organisations) or 12 (people), with valid check digits."""

    def check(weights: list[int]) -> int:
        return sum(w * int(d) for w, d in zip(weights, digits, strict=False)) % 11 % 10

    if len(digits) == 10 and digits.isdigit():
        return check([2, 4, 10, 3, 5, 9, 4, 6, 8]) == int(digits[9])
    if len(digits) == 12 and digits.isdigit():
        return check([7, 2, 4, 10, 3, 5, 9, 4, 6, 8]) == int(digits[10]) and check(
            [3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8]
        ) == int(digits[11])
    return False


def ogrn_valid(digits: str) -> bool:
    """A state registration number: ОГРН (13 digits) or ОГРНИП (15), with a valid check digit."""
    if len(digits) == 13 and digits.isdigit():
        return int(digits[:12]) % 11 % 10 == int(digits[12])
    if len(digits) == 15 and digits.isdigit():
        return int(digits[:14]) % 13 % 10 == int(digits[14])
    return False


def email(raw: str) -> str:
    return raw.strip().lower()


def phone(raw: str) -> str:
    """``+`` and the digits; a Russian 11-digit number written with a leading 8 as +7."""
    digits = re.sub(r"\D", "", raw)
    if len(digits) == 11 and digits[0] == "8":
        digits = "7" + digits[1:]
    return "+" + digits
