"""Failed logins and wrong bearer tokens, counted fleet-wide in Redis and answered 429 at once.

Attempts are counted (before the credential is checked, so parallel guesses cannot slip in under the limit)
per user name and per client address (the trusted proxy's client address when the request comes
from one of WEB_PROXY_ADDRESSES), in a window of ``window_s``: past ``per_user`` failures for a name or
``per_address`` from an address, that name or address gets ``429`` with ``Retry-After`` until the window
ends. Nothing sleeps in a request thread, so ``/healthz`` and other users are never held up; a success
clears only that user's count (another account's login cannot reset an attacker's address), and the
address's count only decays. Every replica reads the same counts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

PREFIX = "worker:web:throttle"


@dataclass(frozen=True)
class Refusal:
    retry_after_s: int
    reason: str


class Throttle:
    """Parameters: client (Redis), window_s, per_user, per_address (failures allowed in the window)."""

    def __init__(self, client: Any, *, window_s: int = 900, per_user: int = 5, per_address: int = 20) -> None:
        self.client = client
        self.window_s = window_s
        self.per_user = per_user
        self.per_address = per_address

    @staticmethod
    def _key(kind: str, value: str) -> str:
        return f"{PREFIX}:{kind}:{hashlib.sha256(value.encode()).hexdigest()[:32]}"

    def _keys(self, kind: str, user: str | None, address: str) -> list[tuple[str, int, str]]:
        keys = [(self._key(f"{kind}-address", address), self.per_address, f"too many failures from {address}")]
        if user is not None:
            keys.append((self._key(f"{kind}-user", user.casefold()), self.per_user, "too many failures for this user"))
        return keys

    def attempt(self, kind: str, user: str | None, address: str) -> Refusal | None:
        """Count an attempt (``kind``: login | bearer) before the credential is checked, so parallel guesses
        cannot all slip in under the limit; a refusal when ``user`` or ``address`` is past its limit."""
        keys = self._keys(kind, user, address)
        pipe = self.client.pipeline(transaction=False)
        for key, _limit, _why in keys:
            pipe.incr(key)
            pipe.expire(key, self.window_s, nx=True)
            pipe.pttl(key)
        answers = pipe.execute()
        for index, (_key, limit, why) in enumerate(keys):
            count, pttl = answers[3 * index], answers[3 * index + 2]
            if int(count) > limit:
                return Refusal(max(1, -(-int(pttl) // 1000)) if pttl and pttl > 0 else self.window_s, why)
        return None

    def succeeded(self, kind: str, user: str | None, address: str) -> None:
        """The credential was right: the attempt was no failure (the user's count starts again)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.decr(self._key(f"{kind}-address", address))
        if user is not None:
            pipe.delete(self._key(f"{kind}-user", user.casefold()))
        pipe.execute()
