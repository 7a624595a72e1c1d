"""Kommo (amoCRM) API v4 client on requests, with this upstream's overrides.

Each HTTP request takes one slot of the fleet-wide ``kommo`` limiter
(7 req/s by default).  Auth: a long-lived token (KOMMO_ACCESS_TOKEN), or
OAuth2 with the pair kept in the database; a 401 refreshes the token once,
under a distributed Redis lock, so two workers never spend the same
single-use refresh token (the second one finds the new pair and goes on).

==========================  ===================================================================
204                         an empty list
400 problem+json            PermanentError with Kommo's validation detail
401                         OAuth: refresh once; a long-lived token, a failed refresh or a 401
                            after it: credentials rejected, the upstream is paused fleet-wide for
                            KOMMO_AUTH_PAUSE_SECONDS (CRITICAL at most every 10 min, alert), the
                            message waits without spending an attempt (its time budget runs) and
                            resumes by itself once a token works again
403 not JSON, or a block    Kommo's IP/account block after abuse (nginx's HTML page): paused
                            fleet-wide for KOMMO_BLOCK_PAUSE_SECONDS, the message waits
403 problem+json otherwise  no rights, a disabled account...: PermanentError with Kommo's detail
429 (JSON or plain text)    the upstream is paused for 2 s fleet-wide, the message waits
404                         PermanentError; other 4xx PermanentError; 5xx, timeouts transient
==========================  ===================================================================
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, NoReturn

import redis
import requests

from worker_service.database import KommoToken, session, utcnow
from worker_service.errors import PermanentError, TransientError
from worker_service.observability.metrics import REQUESTS
from worker_service.ratelimit import RateLimited, RateLimiter

logger = logging.getLogger(__name__)
UPSTREAM = "kommo"
THROTTLE_PAUSE_MS = 2_000
REFRESH_LOCK_MS = 30_000


@dataclass
class OAuthApp:
    client_id: str
    client_secret: str
    redirect_uri: str
    bootstrap_refresh_token: str | None = None


@dataclass
class KommoClient:
    """Parameters: base_url (https://{subdomain}.kommo.com), limiter, redis (for the refresh lock),
    long_lived_token or oauth, block_pause_ms, auth_pause_ms, timeouts."""

    base_url: str
    limiter: RateLimiter
    redis_client: redis.Redis
    long_lived_token: str | None = None
    oauth: OAuthApp | None = None
    block_pause_ms: int = 120_000
    auth_pause_ms: int = 60_000
    connect_timeout_s: float = 5.0
    read_timeout_s: float = 20.0
    session: requests.Session = field(default_factory=requests.Session)

    # --- tokens ------------------------------------------------------------------------
    def _current_token(self) -> str:
        if self.long_lived_token:
            return self.long_lived_token
        with session():
            row = KommoToken.get_or_none(KommoToken.id == 1)
        if row is None:
            return self.refresh(expired_token=None)
        return row.access_token

    def refresh(self, expired_token: str | None) -> str:
        """Exchange the refresh token once for the fleet; returns the access token to use now."""
        if self.oauth is None:
            self._credentials_rejected("Kommo rejected the long-lived token (401)")
        lock = self.redis_client.lock(
            "worker:kommo:refresh", timeout=REFRESH_LOCK_MS / 1000, blocking_timeout=REFRESH_LOCK_MS / 1000
        )
        if not lock.acquire():
            raise TransientError(
                "another worker is refreshing the Kommo token", error_code="kommo_refresh_busy"
            )
        try:
            with session():
                row = KommoToken.get_or_none(KommoToken.id == 1)
            if row is not None and row.access_token != expired_token:
                return row.access_token  # someone refreshed while we waited for the lock
            refresh_token = row.refresh_token if row is not None else self.oauth.bootstrap_refresh_token
            if not refresh_token:
                self._credentials_rejected("no Kommo refresh token (set KOMMO_REFRESH_TOKEN)")
            response = self._send(
                "POST",
                "/oauth2/access_token",
                {
                    "client_id": self.oauth.client_id,
                    "client_secret": self.oauth.client_secret,
                    "grant_type": "refresh_token",
                    "refresh_token": refresh_token,
                    "redirect_uri": self.oauth.redirect_uri,
                },
                token=None,
            )
            if response.status_code != 200:
                if response.status_code >= 500 or response.status_code == 429:
                    raise TransientError(
                        f"Kommo token refresh failed ({response.status_code})",
                        error_code="kommo_refresh_failed",
                    )
                self._credentials_rejected(
                    f"Kommo token refresh failed ({response.status_code}): {_detail(response)}"
                )
            pair = response.json()
            expires = utcnow() + timedelta(seconds=int(pair.get("expires_in") or 86400))
            with session(transaction=True):
                (
                    KommoToken.insert(
                        id=1,
                        access_token=pair["access_token"],
                        refresh_token=pair["refresh_token"],
                        expires_at=expires,
                        updated_at=utcnow(),
                    )
                    .on_conflict(
                        conflict_target=[KommoToken.id],
                        update={
                            KommoToken.access_token: pair["access_token"],
                            KommoToken.refresh_token: pair["refresh_token"],
                            KommoToken.expires_at: expires,
                            KommoToken.updated_at: utcnow(),
                        },
                    )
                    .execute()
                )
            logger.info("Kommo access token refreshed; valid until %s", expires.isoformat())
            return pair["access_token"]
        finally:
            try:
                lock.release()
            except redis.exceptions.LockError:
                pass

    def _credentials_rejected(self, detail: str) -> NoReturn:
        """Pause Kommo for the fleet until someone fixes the credentials; the message waits for it."""
        self.limiter.pause(UPSTREAM, self.auth_pause_ms, f"401 credentials rejected: {detail}", quiet=True)
        if self.redis_client.set(
            "worker:kommo:auth-alerted", "1", nx=True, ex=600
        ):  # once per 10 min, fleet-wide
            self.limiter.count_pause(UPSTREAM, "401 credentials rejected")
            logger.critical(
                "%s; Kommo paused fleet-wide, retried every %d s until a token works (messages wait).",
                detail,
                self.auth_pause_ms // 1000,
                extra={"alert": "kommo_credentials_rejected"},
            )
        raise RateLimited(
            UPSTREAM,
            self.auth_pause_ms,
            paused=True,
            charges_window=True,
            error_code="kommo_credentials_rejected",
        )

    # --- requests ----------------------------------------------------------------------
    def _send(
        self, method: str, path: str, body: Any, *, token: str | None, params: dict[str, Any] | None = None
    ) -> requests.Response:
        self.limiter.slot(UPSTREAM)
        headers = {"Content-Type": "application/json", "X-Request-Id": str(uuid.uuid4())}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            return self.session.request(
                method,
                f"{self.base_url.rstrip('/')}{path}",
                params=params,
                data=None if body is None else json.dumps(body),
                headers=headers,
                timeout=(self.connect_timeout_s, self.read_timeout_s),
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"Kommo unreachable: {exc}", error_code="kommo_unreachable") from None

    def request(
        self, method: str, path: str, body: Any = None, *, params: dict[str, Any] | None = None
    ) -> Any:
        """One API call; returns the decoded JSON (None for 204)."""
        token = self._current_token()
        response = self._send(method, path, body, token=token, params=params)
        if response.status_code == 401:
            token = self.refresh(expired_token=token)
            response = self._send(method, path, body, token=token, params=params)
            if response.status_code == 401:
                self._credentials_rejected(f"Kommo answered 401 after a token refresh: {_detail(response)}")
        return self._result(response)

    def _result(self, response: requests.Response) -> Any:
        status = response.status_code
        REQUESTS.labels(UPSTREAM, str(status)).inc()
        if status == 204:
            return None
        if 200 <= status < 300:
            return response.json() if response.content else None
        detail = _detail(response)
        if status == 429:
            self.limiter.pause(UPSTREAM, THROTTLE_PAUSE_MS, f"429: {detail}")
            raise RateLimited(UPSTREAM, THROTTLE_PAUSE_MS, paused=True)
        if status == 403:
            if not _is_block(response):
                raise PermanentError(f"Kommo 403: {detail}", error_code="kommo_403")
            self.limiter.pause(UPSTREAM, self.block_pause_ms, f"403 block: {detail}")
            logger.critical(
                "Kommo answered 403 (block after abuse?): %s; paused for %d s",
                detail,
                self.block_pause_ms // 1000,
                extra={"alert": "kommo_blocked"},
            )
            raise RateLimited(UPSTREAM, self.block_pause_ms, paused=True)
        if status >= 500 or status == 408:
            raise TransientError(f"Kommo {status}: {detail}", error_code=f"kommo_{status}")
        raise PermanentError(f"Kommo {status}: {detail}", error_code=f"kommo_{status}")

    # --- typed helpers --------------------------------------------------------------------
    def list(self, path: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        data = self.request("GET", path, params=params)
        if not data:
            return []
        embedded = data.get("_embedded") or {}
        return next(iter(embedded.values()), []) if embedded else []

    def create_one(self, path: str, item: dict[str, Any]) -> int:
        data = self.request("POST", path, [item])
        try:
            return int(next(iter(data["_embedded"].values()))[0]["id"])
        except (KeyError, IndexError, TypeError, StopIteration):
            raise TransientError(
                f"unexpected Kommo answer to POST {path}: {str(data)[:200]}", error_code="kommo_bad_response"
            ) from None


#: words of a JSON 403 that mean a block for abuse rather than missing rights or a disabled account
_BLOCK_WORDS = ("block", "too many", "limit", "ddos", "ip address")


def _is_block(response: requests.Response) -> bool:
    """Kommo's block after abuse is nginx's HTML 403 page, not problem+json (amocrm-api-php issue 434: "403
    Forbidden ... nginx"; issue 563: after repeated violations "any API request returns HTTP 403"); a
    problem+json 403 is about rights or the account, unless its detail speaks of a block or a limit."""
    try:
        data = response.json()
    except ValueError:
        return True
    if not isinstance(data, dict):
        return True
    text = f"{data.get('title', '')} {data.get('detail', '')}".lower()
    return any(word in text for word in _BLOCK_WORDS)


def _detail(response: requests.Response) -> str:
    try:
        data = response.json()
    except ValueError:
        return (response.text or response.reason or "")[:500]
    if isinstance(data, dict):
        parts = [str(data.get("detail") or data.get("title") or "")]
        for item in data.get("validation-errors") or []:
            for err in item.get("errors") or []:
                parts.append(f"{err.get('path')}: {err.get('detail')} ({err.get('code')})")
        return "; ".join(p for p in parts if p)[:2000]
    return str(data)[:500]
