"""Who is asking: named users and the bootstrap password, the API's bearer token, the client's address.

The web app keeps who logged in in Flask's session cookie, signed with the key of web.sessions (never one a
password derives), with a stamp of the credential they logged in with: a password change or a removal
ends that user's sessions, and a named user's role is read from the database on each request.
API calls may instead send ``Authorization: Bearer WEB_API_TOKEN`` (no cookie, so no CSRF).  Failed
logins and wrong bearer tokens are throttled by ``web.throttle`` (429 at once, never a sleep).  Users are the named ones of web.users (viewer or
operator) and the bootstrap WEB_USER / WEB_PASSWORD (an operator).  Behind a reverse proxy that logs
people in (oauth2-proxy), WEB_PROXY_USER_HEADER names the user, believed only from WEB_PROXY_ADDRESSES.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from werkzeug.datastructures import Headers

from worker_service.web.throttle import HashGate

COOKIE = "worker_session"  # the session cookie's name


@dataclass(frozen=True)
class Principal:
    """Who is acting: ``user:<name>``, ``token:api`` or ``local``, and from where (for the audit log).

    ``via`` is how they proved it: ``session`` (the cookie: state changes need the CSRF token), ``proxy``
    (the reverse proxy's user header: its cookie rides along, so CSRF too), ``token`` (the bearer token: no
    cookie, so no CSRF) or ``local`` (--insecure-local).
    """

    name: str
    remote: str
    role: str = "operator"  # viewer: reads only (web.users)
    via: str = "session"

    @property
    def can_change(self) -> bool:
        return self.role == "operator"

    @property
    def audit_name(self) -> str:
        return f"{self.name}@{self.remote}"


class Authenticator:
    """Parameters: user, password, api_token, secret (WEB_SESSION_SECRET; None: generated, see web.sessions),
    session_hours, login_slots (password checks at once, web.throttle.HashGate), proxy_header (None: off) and
    proxy_addresses (the peers whose proxy_header and X-Forwarded-* headers are believed)."""

    def __init__(
        self,
        *,
        user: str,
        password: str | None,
        api_token: str | None,
        secret: str | None,
        session_hours: float,
        login_slots: int,
        proxy_header: str | None = None,
        proxy_addresses: frozenset[str] = frozenset(),
    ) -> None:
        self.user = user
        self.password = password
        self.api_token = api_token
        self.secret = secret
        self.session_seconds = int(session_hours * 3600)
        self.proxy_header = proxy_header
        self.proxy_addresses = proxy_addresses
        self.hash_gate = HashGate(login_slots)

    def bearer(self, header: str | None, remote: str) -> Principal | None:
        if not self.api_token or not header or not header.startswith("Bearer "):
            return None
        if hmac.compare_digest(header[7:].strip().encode(), self.api_token.encode()):
            return Principal("token:api", remote, via="token")
        return None

    def proxied(self, headers: Headers, remote: str) -> Principal | None:
        """The user a trusted reverse proxy vouches for: a named user gets their role, anyone else ``viewer``."""
        from worker_service.web.users import role_of

        if not self.proxy_header or remote not in self.proxy_addresses:
            return None
        name = headers.get(self.proxy_header, "").strip()
        if not name or len(name) > 200 or not name.isprintable():
            return None
        return Principal(f"user:{name}", remote, role=role_of(name) or "viewer", via="proxy")

    def client_address(self, remote: str, headers: Headers) -> str:
        """Who the client is: behind a trusted proxy, the address the proxy appended to X-Forwarded-For (every
        user shares the proxy's own address); otherwise the peer's."""
        if remote in self.proxy_addresses:
            forwarded = headers.get("X-Forwarded-For", "").split(",")[-1].strip()
            if forwarded and len(forwarded) <= 64 and forwarded.isprintable():
                return forwarded
        return remote

    def served_over_https(self, remote: str, headers: Headers, is_secure: bool) -> bool:
        """True when the browser speaks HTTPS to us: directly, or to a trusted proxy that says so."""
        forwarded = headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        return is_secure or (remote in self.proxy_addresses and forwarded == "https")

    def public_origin(self, remote: str, headers: Headers, host_url: str, is_secure: bool) -> str:
        """This site's origin as the browser sees it (what its ``Origin`` header names): behind a trusted proxy
        that terminates TLS it is ``https://`` and, when the proxy rewrites Host, its ``X-Forwarded-Host``."""
        scheme, _, rest = host_url.partition("://")
        host = rest.split("/", 1)[0]
        if remote in self.proxy_addresses:
            forwarded_host = headers.get("X-Forwarded-Host", "").split(",")[0].strip()
            if forwarded_host and len(forwarded_host) <= 255 and forwarded_host.isprintable():
                host = forwarded_host
        return f"{'https' if self.served_over_https(remote, headers, is_secure) else scheme}://{host}"

    def stamp(self, user: str, key: bytes, password_hash: str | None) -> str | None:
        """What the session keeps of the credential ``user`` logs in with (an HMAC under the session key, so
        the cookie reveals nothing to guess against): of ``password_hash`` for a named user (web.users), of
        WEB_PASSWORD for the bootstrap one; None when there is no such user any more."""
        credential = password_hash
        if credential is None:
            if not self.password or not hmac.compare_digest(user.encode(), self.user.encode()):
                return None
            credential = f"bootstrap:{self.password}"
        return hmac.new(key, credential.encode(), hashlib.sha256).hexdigest()[:32]

    # --- login -----------------------------------------------------------------------------------
    def check_password(self, user: str, password: str) -> str | None:
        """The user's role if the password is right, else None.  A named user (web.users) first, then the
        bootstrap WEB_USER / WEB_PASSWORD.  Throttling is the caller's (web.throttle), before and after."""
        from worker_service.web.users import verify

        role: str | None = verify(user, password)
        bootstrap = bool(self.password) and hmac.compare_digest(
            user.encode(), self.user.encode()
        ) & hmac.compare_digest(password.encode(), (self.password or "").encode())
        if role is None and bootstrap:
            role = "operator"
        return role
