"""The one rule for hiding secrets from people, applied at every exit: log lines (observability.logs), asset
records (CLI, pages, API), dead-letter pages and API, the mounted queue views, Sentry events, settings errors.

A value is masked when its key looks like a secret (password, token, API key, cookie, DSN, refresh token...),
when it is one of the configured secret values (``Settings.secret_values``), and inside any string:

* a URL's credentials: ``scheme://user:password@host`` -> ``scheme://user:***@host``;
* a query parameter or ``name=value`` pair whose name looks like a secret or a signature
  (``?X-Amz-Signature=``, ``&sig=``, ``?token=``, ``access_token=``): presigned URLs carry their key there;
* a quoted ``'name': 'value'`` / ``"name": "value"`` pair whose name looks like a secret: the ``repr`` of a
  message's keyword arguments (Dramatiq's own log lines print it) and JSON text.

Applied recursively to dicts, lists and tuples.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

_SECRET_WORDS = (
    r"pass(word|wd|phrase)?|secret|token|api[_-]?key|authori[sz]ation|cookie|refresh|dsn|credential"
    r"|private[_-]?key"
)
SECRET_KEY = re.compile(f"({_SECRET_WORDS})", re.I)
#: names of query parameters and form fields that carry a key: the secret words plus the signatures of presigned
#: URLs (S3 ``X-Amz-Signature`` / ``X-Amz-Credential``, GCS ``X-Goog-Signature``, Azure SAS ``sig``) and ``key``
_SECRET_PARAMETER = (
    f"[\\w.\\-]*?(?:{_SECRET_WORDS}|signature|\\bsig\\b|\\bkey\\b|x-amz-security-token)[\\w.\\-]*"
)
_URL_CREDENTIALS = re.compile(r"(?P<scheme>\b[a-z][a-z0-9+.\-]*://)(?P<userinfo>[^/?#@\s\"']+)@", re.I)
_PARAMETER = re.compile(
    f"(?P<name>(?:(?<=[?&;\\s,(])|^){_SECRET_PARAMETER})="
    f"(?P<value>(?P<vq>['\"])(?:\\\\.|(?!(?P=vq)).)*(?P=vq)|[^&#\\s\"'<>;,)]+)",
    re.I,
)
_QUOTED_PAIR = re.compile(
    f"(?P<head>(?P<q>['\"])[\\w.\\-]*?(?:{_SECRET_WORDS})[\\w.\\-]*(?P=q)\\s*:\\s*)(?P<vq>['\"])(?P<value>(?:\\\\.|(?!(?P=vq)).)*)(?P=vq)",
    re.I,
)
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


def mask_text(text: str, *, secrets: Iterable[str] = (), replacement: str = MASK) -> str:
    """``text`` with every secret the module docstring lists replaced by ``replacement``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, replacement)
    if "@" in text:
        text = mask_url_credentials(text, replacement)
    if "=" in text:
        text = _PARAMETER.sub(lambda m: f"{m.group('name')}={_quoted(m.group('vq'), replacement)}", text)
    if ":" in text:
        text = _QUOTED_PAIR.sub(
            lambda m: f"{m.group('head')}{m.group('vq')}{replacement}{m.group('vq')}", text
        )
    return text


def _quoted(quote: str | None, replacement: str) -> str:
    return f"{quote}{replacement}{quote}" if quote else replacement


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
        return mask_text(value, secrets=secrets, replacement=replacement)
    return value
