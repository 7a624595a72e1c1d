"""Fetching an asset's bytes: ``file:`` under STORAGE_ROOT, or ``https://`` behind an SSRF guard.

``file:`` paths must stay under ``STORAGE_ROOT`` after resolving ``..`` and
symlinks.  URLs: https only (plain http when ``FETCH_ALLOW_HTTP``), connect
and read timeouts, a streamed byte cap, redirects followed by hand so that
every hop's address is checked after DNS resolution: loopback, private,
link-local (cloud metadata), multicast and reserved addresses are refused
unless the host or address is in ``FETCH_ALLOWLIST``.  5xx and timeouts are
transient; other 4xx are permanent.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import requests

from worker_service.errors import PermanentError, TransientError

MAX_REDIRECTS = 5
CHUNK = 64 * 1024


class ForbiddenSource(PermanentError):
    """A source outside what the worker may read; status error_code ``forbidden_source``."""

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="forbidden_source")


@dataclass(frozen=True)
class FetchPolicy:
    storage_root: str
    max_bytes: int
    connect_timeout: float
    read_timeout: float
    allow_http: bool
    allowlist: tuple[str, ...]


@contextmanager
def fetched(source: str, policy: FetchPolicy) -> Iterator[str]:
    """A local path with the source's bytes (a temporary copy for URLs), size-checked."""
    if source.startswith("file:"):
        path = resolve_file(source[len("file:"):], policy.storage_root)
        size = path.stat().st_size
        if size > policy.max_bytes:
            raise PermanentError(f"the file is {size} bytes; the limit is {policy.max_bytes}", error_code="too_large")
        yield str(path)
        return
    tmp_dir = Path(policy.storage_root) / ".tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=tmp_dir, prefix="fetch-")
    try:
        with os.fdopen(fd, "wb") as out:
            download(source, out, policy)
        yield tmp
    finally:
        Path(tmp).unlink(missing_ok=True)


def resolve_file(relative: str, storage_root: str) -> Path:
    root = Path(storage_root).resolve()
    candidate = Path(relative)
    if candidate.is_absolute() or ".." in candidate.parts or not relative.strip():
        raise ForbiddenSource(f"file: paths must be relative to STORAGE_ROOT without '..': {relative!r}")
    path = (root / candidate).resolve()
    if path != root and root not in path.parents:
        raise ForbiddenSource(f"{relative!r} resolves outside STORAGE_ROOT (symlink?)")
    if not path.is_file():
        raise PermanentError(f"no such file under STORAGE_ROOT: {relative!r}", error_code="fetch_failed")
    return path


def _allowed(host: str, addresses: list[str], allowlist: tuple[str, ...]) -> bool:
    for entry in allowlist:
        if entry == host:
            return True
        try:
            network = ipaddress.ip_network(entry, strict=False)
        except ValueError:
            continue
        if all(ipaddress.ip_address(a) in network for a in addresses):
            return True
    return False


def check_url(url: str, policy: FetchPolicy) -> None:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ForbiddenSource(f"unsupported URL: {url!r}")
    if parts.scheme == "http" and not policy.allow_http:
        raise ForbiddenSource("plain http:// sources are refused (FETCH_ALLOW_HTTP=false)")
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, parts.port or (443 if parts.scheme == "https" else 80),
                                   type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TransientError(f"cannot resolve {host}: {exc}", error_code="fetch_failed") from None
    addresses = sorted({str(info[4][0]) for info in infos})
    if _allowed(host, addresses, policy.allowlist):
        return
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
            ip = ip.ipv4_mapped
        if not ip.is_global or ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_loopback:
            raise ForbiddenSource(f"{host} resolves to a non-public address ({ip}); refused")


def download(url: str, out, policy: FetchPolicy) -> None:  # noqa: ANN001 - a binary file object
    session = requests.Session()
    session.trust_env = False  # never go through a proxy the guard did not check
    for _hop in range(MAX_REDIRECTS + 1):
        check_url(url, policy)
        try:
            response = session.get(url, stream=True, allow_redirects=False,
                                   timeout=(policy.connect_timeout, policy.read_timeout))
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"fetch failed: {exc}", error_code="fetch_failed") from None
        with response:
            if response.is_redirect:
                url = urljoin(url, response.headers.get("Location", ""))
                continue
            if response.status_code >= 500 or response.status_code in (408, 429):
                raise TransientError(f"fetch failed: HTTP {response.status_code}", error_code="fetch_failed")
            if response.status_code >= 400:
                raise PermanentError(f"fetch failed: HTTP {response.status_code}", error_code="fetch_failed")
            declared = int(response.headers.get("Content-Length") or 0)
            if declared > policy.max_bytes:
                raise PermanentError(f"the source is {declared} bytes; the limit is {policy.max_bytes}",
                                     error_code="too_large")
            received = 0
            try:
                for chunk in response.iter_content(CHUNK):
                    received += len(chunk)
                    if received > policy.max_bytes:
                        raise PermanentError(f"the source exceeds {policy.max_bytes} bytes", error_code="too_large")
                    out.write(chunk)
            except (requests.ConnectionError, requests.Timeout) as exc:
                raise TransientError(f"fetch interrupted: {exc}", error_code="fetch_failed") from None
            return
    raise PermanentError(f"more than {MAX_REDIRECTS} redirects", error_code="fetch_failed")
