"""The key that signs the dashboard's session cookies and CSRF tokens, and the cookie's ``Secure`` flag.

The key is WEB_SESSION_SECRET when set (at least ``MIN_SECRET_LENGTH`` characters); otherwise a random key
generated once and kept in Redis (the rate limiter's, ``SECRET_KEY``) where every replica reads it, and
replaced by ``worker sessions rotate`` (which ends every session). No password derives it: a stolen cookie
gives nothing to guess a password against offline. Replicas re-read it every few seconds.

The cookie is ``Secure`` when the request came over HTTPS, directly or per the ``X-Forwarded-Proto`` of a
trusted proxy (WEB_PROXY_ADDRESSES).
"""

from __future__ import annotations

import hashlib
import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import Flask, request
from flask.sessions import SecureCookieSessionInterface
from itsdangerous import URLSafeTimedSerializer

if TYPE_CHECKING:
    from worker_service.web.auth import Authenticator

logger = logging.getLogger(__name__)
SECRET_KEY = "worker:web:session-secret"
MIN_SECRET_LENGTH = 32


class SessionSecret:
    """Parameters: configured (WEB_SESSION_SECRET or None), client (a callable returning the Redis that keeps
    the generated key), refresh_s (how long a replica trusts the key it read)."""

    def __init__(self, configured: str | None, client: Callable[[], Any], *, refresh_s: float = 5.0) -> None:
        self.configured = configured
        self.client = client
        self.refresh_s = refresh_s
        self._key: bytes | None = None
        self._read_at = 0.0
        self._lock = threading.Lock()

    def current(self) -> bytes:
        if self.configured is not None:
            return hashlib.sha256(self.configured.encode()).digest()
        with self._lock:
            if self._key is None or time.monotonic() - self._read_at > self.refresh_s:
                self._key, self._read_at = self._read(), time.monotonic()
            return self._key

    def _read(self) -> bytes:
        try:
            client = self.client()
            client.set(SECRET_KEY, secrets.token_hex(32), nx=True)  # the first replica to ask makes it
            stored = client.get(SECRET_KEY)
            return hashlib.sha256(stored).digest()
        except Exception as exc:  # noqa: BLE001 - Redis down: keep the key we had, or sign with a local one
            if self._key is not None:
                return self._key
            logger.warning(
                "session key unreadable from Redis (%s): sessions of this replica only, until it is", exc
            )
            return secrets.token_bytes(32)


def rotate_session_secret(client: Any) -> None:
    """A new generated key: every session and CSRF token signed with the old one stops being accepted."""
    client.set(SECRET_KEY, secrets.token_hex(32))


class DashboardSessions(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions with the key of ``secret`` and ``Secure`` on HTTPS requests (per ``auth``,
    which knows the trusted proxies)."""

    def __init__(self, secret: SessionSecret, auth: Authenticator) -> None:
        self.secret = secret
        self.auth = auth

    def get_signing_serializer(self, app: Flask) -> URLSafeTimedSerializer | None:
        # the CSRF tokens (Flask-WTF) are signed with app.secret_key too, within this same request
        app.secret_key = self.secret.current()
        return super().get_signing_serializer(app)

    def get_cookie_secure(self, app: Flask) -> bool:
        return self.auth.served_over_https(request.remote_addr or "-", request.headers, request.is_secure)
