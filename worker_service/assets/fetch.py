"""Fetching an asset's bytes: ``file:`` under STORAGE_ROOT, or ``https://`` behind an SSRF guard.

``file:`` paths must stay under ``STORAGE_ROOT`` after resolving ``..`` and
symlinks.  URLs: https only (plain http when ``FETCH_ALLOW_HTTP``), connect
and read timeouts, a streamed byte cap, redirects followed by hand so that
every hop's address is checked after DNS resolution: loopback, private,
link-local (cloud metadata), IPv6 site-local (fec0::/10), multicast and reserved addresses are refused
unless the host or address is in ``FETCH_ALLOWLIST``; IPv6 forms that carry an
IPv4 address (IPv4-mapped, 6to4, NAT64, Teredo) are checked as that address.
The host is resolved once per hop and the connection goes to the address that
was checked (``Host``, TLS SNI and certificate verification keep the name), so a
resolver that answers differently the second time (DNS rebinding) changes
nothing.  5xx and timeouts are transient; other 4xx are permanent.

A download has a total deadline (``FETCH_DEADLINE_SECONDS``) besides the per-read timeout: a source that
sends one byte at a time never trips a read timeout, and would hold an assets thread for the whole time limit
on every retry.  Past the deadline the fetch fails for good (``fetch_failed``): a retry would be held again.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urljoin, urlsplit, urlunsplit

import requests
import urllib3
from requests.adapters import HTTPAdapter

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
    deadline_s: float = 120.0  # the whole download, every redirect included (FETCH_DEADLINE_SECONDS)


@contextmanager
def fetched(source: str, policy: FetchPolicy) -> Iterator[str]:
    """A local path with the source's bytes (a temporary copy for URLs), size-checked."""
    if source.startswith("file:"):
        path = resolve_file(source[len("file:") :], policy.storage_root)
        size = path.stat().st_size
        if size > policy.max_bytes:
            raise PermanentError(
                f"the file is {size} bytes; the limit is {policy.max_bytes}", error_code="too_large"
            )
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


_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))


def embedded_ipv4(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """The IPv4 addresses an IPv6 address stands for (IPv4-mapped, 6to4, NAT64, Teredo server and client)."""
    if isinstance(ip, ipaddress.IPv4Address):
        return []
    found = [a for a in (ip.ipv4_mapped, ip.sixtofour) if a is not None]
    if ip.teredo is not None:
        found.extend(ip.teredo)
    if any(ip in network for network in _NAT64):
        found.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    return found


def _public(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # Python's is_global still counts deprecated site-local IPv6 (fec0::/10, RFC 3879) as global
    site_local = isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local
    return ip.is_global and not (
        ip.is_multicast or ip.is_reserved or ip.is_link_local or ip.is_loopback or site_local
    )


def check_url(url: str, policy: FetchPolicy) -> list[str]:
    """The addresses ``url``'s host resolves to, in the resolver's order, every one checked (else
    ForbiddenSource); resolved once: the connection goes to one of these, never to a new answer."""
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ForbiddenSource(f"unsupported URL: {url!r}")
    if parts.scheme == "http" and not policy.allow_http:
        raise ForbiddenSource("plain http:// sources are refused (FETCH_ALLOW_HTTP=false)")
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(
            host, parts.port or (443 if parts.scheme == "https" else 80), type=socket.SOCK_STREAM
        )
    except socket.gaierror as exc:
        raise TransientError(f"cannot resolve {host}: {exc}", error_code="fetch_failed") from None
    ordered = list(dict.fromkeys(str(info[4][0]).split("%", 1)[0] for info in infos))
    if _allowed(host, sorted(ordered), policy.allowlist):
        return ordered
    for address in ordered:
        ip = ipaddress.ip_address(address)
        for candidate in (ip, *embedded_ipv4(ip)):
            if not _public(candidate):
                raise ForbiddenSource(f"{host} resolves to a non-public address ({candidate}); refused")
    return ordered


class _PinnedTLS(HTTPAdapter):
    """Connects to an address while TLS still sends and verifies ``hostname`` (SNI, certificate name)."""

    def __init__(self, hostname: str) -> None:
        self.hostname = hostname
        super().__init__(max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        kwargs["server_hostname"] = self.hostname
        kwargs["assert_hostname"] = self.hostname
        super().init_poolmanager(*args, **kwargs)


def pinned_request(url: str, address: str) -> tuple[str, dict[str, str], requests.Session]:
    """``url`` rewritten to connect to ``address``, the headers that keep the name, and a session that
    verifies TLS for the name."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc_host = f"[{address}]" if ":" in address else address
    netloc = f"{netloc_host}:{parts.port}" if parts.port else netloc_host
    session = requests.Session()
    session.trust_env = False  # never go through a proxy the guard did not check
    session.mount("https://", _PinnedTLS(host))
    default_port = 443 if parts.scheme == "https" else 80
    host_header = host if not parts.port or parts.port == default_port else f"{host}:{parts.port}"
    if ":" in host:
        host_header = f"[{host_header}]" if not parts.port else host_header
    return urlunsplit(parts._replace(netloc=netloc)), {"Host": host_header}, session


def download(url: str, out, policy: FetchPolicy) -> None:  # noqa: ANN001 - a binary file object
    deadline = time.monotonic() + policy.deadline_s
    for _hop in range(MAX_REDIRECTS + 1):
        addresses = check_url(url, policy)
        for number, address in enumerate(addresses, start=1):
            target, headers, session = pinned_request(url, address)
            try:
                with session:
                    location = _get(session, target, headers, out, policy, deadline)
                break
            except _Unreachable as exc:  # as a browser does: the next checked address
                if number == len(addresses):
                    raise TransientError(f"fetch failed: {exc}", error_code="fetch_failed") from None
        if location is None:
            return
        url = urljoin(url, location)
    raise PermanentError(f"more than {MAX_REDIRECTS} redirects", error_code="fetch_failed")


class _Unreachable(Exception):
    """No answer from one address (the next one may answer)."""


def _past(policy: FetchPolicy) -> PermanentError:
    return PermanentError(
        f"the download took longer than FETCH_DEADLINE_SECONDS ({policy.deadline_s:g} s)",
        error_code="fetch_failed",
    )


def _get(
    session: requests.Session,
    target: str,
    headers: dict[str, str],
    out,
    policy: FetchPolicy,  # noqa: ANN001
    deadline: float,
) -> str | None:
    """One hop: the bytes written to ``out`` (None returned), or the redirect's Location."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise _past(policy)
    try:
        response = session.get(
            target,
            headers=headers,
            stream=True,
            allow_redirects=False,
            timeout=(min(policy.connect_timeout, left), min(policy.read_timeout, left)),
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        if time.monotonic() > deadline:
            raise _past(policy) from None
        raise _Unreachable(str(exc)) from None
    with response:
        if response.is_redirect:
            return response.headers.get("Location", "")
        if response.status_code >= 500 or response.status_code in (408, 429):
            raise TransientError(f"fetch failed: HTTP {response.status_code}", error_code="fetch_failed")
        if response.status_code >= 400:
            raise PermanentError(f"fetch failed: HTTP {response.status_code}", error_code="fetch_failed")
        declared = int(response.headers.get("Content-Length") or 0)
        if declared > policy.max_bytes:
            raise PermanentError(
                f"the source is {declared} bytes; the limit is {policy.max_bytes}", error_code="too_large"
            )
        received = 0
        try:
            # read1: what has arrived, at most CHUNK (iter_content waits for a whole chunk, which a drip never fills)
            while chunk := response.raw.read1(CHUNK, decode_content=True):
                if time.monotonic() > deadline:
                    raise _past(policy)
                received += len(chunk)
                if received > policy.max_bytes:
                    raise PermanentError(
                        f"the source exceeds {policy.max_bytes} bytes", error_code="too_large"
                    )
                out.write(chunk)
        except (requests.ConnectionError, requests.Timeout, urllib3.exceptions.HTTPError) as exc:
            if time.monotonic() > deadline:
                raise _past(policy) from None
            raise TransientError(f"fetch interrupted: {exc}", error_code="fetch_failed") from None
    return None
