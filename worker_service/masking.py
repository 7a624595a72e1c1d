"""The one rule for hiding secrets from people: dead-letter pages and API, the mounted queue views, Sentry events.

A value is masked when its key looks like a secret (password, token, API key, cookie, DSN, refresh token...),
when it is one of the configured secret values, and wherever a URL inside a string carries credentials
(``scheme://user:password@host`` -> ``scheme://***@host``). Applied recursively to dicts, lists and tuples.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

SECRET_KEY = re.compile(
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|authori[sz]ation|cookie|refresh|dsn|credential|private[_-]?key)",
    re.I)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.\-]*://)(?P<userinfo>[^/?#@\s\"']+)@", re.I)
MASK = "***"


def is_secret_key(key: str) -> bool:
    return bool(key) and SECRET_KEY.search(key) is not None


def mask_url_credentials(text: str, replacement: str = MASK) -> str:
    """Credentials of every URL in ``text`` replaced: ``user:password@`` keeps the user (an identity, useful to
    an operator), a lone ``userinfo@`` is masked whole (``https://TOKEN@host`` carries a token there)."""

    def masked(match: re.Match[str]) -> str:
        user, colon, _ = match.group("userinfo").partition(":")
        return f"{match.group('scheme')}{user + ':' if colon and user else ''}{replacement}@"

    return _URL_CREDENTIALS.sub(masked, text)


def mask(value: Any, key: str = "", *, secrets: Iterable[str] = (), replacement: str = MASK) -> Any:
    """``value`` with every secret replaced by ``replacement`` (see the module docstring)."""
    known = tuple(s for s in secrets if s)
    return _mask(value, key, known, replacement)


def _mask(value: Any, key: str, secrets: tuple[str, ...], replacement: str) -> Any:
    if isinstance(value, dict):
        return {k: _mask(v, str(k), secrets, replacement) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v, key, secrets, replacement) for v in value]
    if is_secret_key(key) and value not in (None, ""):
        return replacement
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, replacement)
        return mask_url_credentials(value, replacement)
    return value
