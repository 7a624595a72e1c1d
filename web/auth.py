"""Dashboard authentication: signed session cookies, CSRF tokens, bearer tokens, slowed failed logins.

The session cookie is ``base64(json) . hmac`` signed with WEB_SESSION_SECRET
(by default derived from WEB_PASSWORD, so every replica accepts it); it is
HttpOnly and SameSite=Strict.  The CSRF token is an HMAC of the session
nonce: every state-changing request made with a cookie must carry it.  API
calls may instead send ``Authorization: Bearer WEB_API_TOKEN`` (no cookie, so
no CSRF).  Failed logins from one address wait 2^n seconds (capped).  Users
are the named ones of web.users (viewer or operator) and the bootstrap
WEB_USER / WEB_PASSWORD (an operator); the role travels in the signed cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass

COOKIE = "worker_session"
MAX_LOGIN_DELAY_S = 8.0


@dataclass(frozen=True)
class Principal:
    """Who is acting: ``user:<name>`` or ``token:api``, and from where (for the audit log)."""

    name: str
    remote: str
    nonce: str | None = None  # sessions only
    role: str = "operator"  # viewer: reads only (web.users)

    @property
    def can_change(self) -> bool:
        return self.role == "operator"

    @property
    def audit_name(self) -> str:
        return f"{self.name}@{self.remote}"


class Authenticator:
    """Parameters: user, password, api_token, secret (None: derived from the password), session_hours."""

    def __init__(self, *, user: str, password: str | None, api_token: str | None, secret: str | None,
                 session_hours: float) -> None:
        self.user = user
        self.password = password
        self.api_token = api_token
        seed = secret or (f"session:{password}" if password else secrets.token_hex(32))
        self.key = hashlib.sha256(seed.encode()).digest()
        self.session_seconds = int(session_hours * 3600)
        self._failures: dict[str, int] = {}
        self._lock = threading.Lock()

    # --- sessions ------------------------------------------------------------------------------
    def issue(self, user: str, role: str) -> str:
        payload = base64.urlsafe_b64encode(json.dumps(
            {"u": user, "r": role, "n": secrets.token_urlsafe(16), "e": int(time.time()) + self.session_seconds}
        ).encode()).decode()
        return f"{payload}.{self._sign(payload)}"

    def _sign(self, value: str) -> str:
        return hmac.new(self.key, value.encode(), hashlib.sha256).hexdigest()

    def session(self, cookie: str | None, remote: str) -> Principal | None:
        if not cookie or "." not in cookie:
            return None
        payload, signature = cookie.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(payload)):
            return None
        try:
            data = json.loads(base64.urlsafe_b64decode(payload.encode()))
        except ValueError:
            return None
        if int(data.get("e", 0)) < time.time():
            return None
        return Principal(f"user:{data.get('u')}", remote, data.get("n"), role=str(data.get("r") or "operator"))

    def csrf_token(self, principal: Principal) -> str:
        return self._sign(f"csrf:{principal.nonce}")

    def csrf_ok(self, principal: Principal, token: str | None) -> bool:
        return token is not None and principal.nonce is not None and hmac.compare_digest(token, self.csrf_token(principal))

    def bearer(self, header: str | None, remote: str) -> Principal | None:
        if not self.api_token or not header or not header.startswith("Bearer "):
            return None
        if hmac.compare_digest(header[7:].strip().encode(), self.api_token.encode()):
            return Principal("token:api", remote)
        return None

    # --- login -----------------------------------------------------------------------------------
    def check_password(self, user: str, password: str, remote: str) -> str | None:
        """The user's role if the password is right, else None; each failure from ``remote`` makes the next
        attempt wait longer.  A named user (web.users) first, then the bootstrap WEB_USER / WEB_PASSWORD."""
        from web.users import verify

        with self._lock:
            failures = self._failures.get(remote, 0)
        if failures:
            time.sleep(min(MAX_LOGIN_DELAY_S, 0.5 * 2 ** (failures - 1)))
        role: str | None = verify(user, password)
        bootstrap = bool(self.password) and hmac.compare_digest(user.encode(), self.user.encode()) & \
            hmac.compare_digest(password.encode(), (self.password or "").encode())
        if role is None and bootstrap:
            role = "operator"
        ok = role is not None
        with self._lock:
            if ok:
                self._failures.pop(remote, None)
            else:
                self._failures[remote] = failures + 1
                if len(self._failures) > 10_000:
                    self._failures.clear()
        return role
