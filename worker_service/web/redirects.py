"""Where the dashboard may send a browser after login, and whether a request came from this site.

``local_path`` reads ``next`` the way a browser will read the ``Location`` header: it drops tabs and line
breaks anywhere, strips leading and trailing control characters and spaces, turns backslashes into slashes
and decodes percent-escapes before deciding. Only a path on this host survives (no scheme, no host, no
``//``); anything else becomes ``/``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote, urlsplit

_REMOVED_ANYWHERE = re.compile(r"[\t\n\r]")
_C0_AND_SPACE = "".join(map(chr, range(0x21)))


def _as_a_browser_reads(value: str) -> str:
    return _REMOVED_ANYWHERE.sub("", value).strip(_C0_AND_SPACE).replace("\\", "/")


def _is_local(value: str) -> bool:
    parts = urlsplit(value)
    return value.startswith("/") and not value.startswith("//") and not parts.scheme and not parts.netloc


def local_path(target: str | None) -> str:
    """``target`` if it is a path on this host however a browser normalises it, else ``/``."""
    if not target:
        return "/"
    normalised = _as_a_browser_reads(target)
    decoded = normalised
    for _ in range(3):  # nested escapes (%252F) decode one layer per round
        decoded = _as_a_browser_reads(unquote(decoded))
    if not (_is_local(normalised) and _is_local(decoded)) or any(
        ord(c) < 0x20 or c == "\x7f" for c in decoded
    ):
        return "/"
    return normalised


def same_origin(origin_or_referer: str | None, host_url: str) -> bool:
    """True when the ``Origin`` (or ``Referer``) header names this site, or was not sent (as Django does,
    a missing header is not a refusal: privacy tools strip it, and the CSRF token is still required)."""
    if not origin_or_referer:
        return True
    if origin_or_referer == "null":
        return False
    theirs, ours = urlsplit(origin_or_referer), urlsplit(host_url)
    return (theirs.scheme, theirs.netloc.lower()) == (ours.scheme, ours.netloc.lower())
