"""Failed logins and wrong bearer tokens, counted fleet-wide in Redis and answered 429 at once; password checks
bounded in number, answered 503 at once past the bound.

Attempts are counted (before the credential is checked, so parallel guesses cannot slip in under the limit)
per user name *from* a client address and per client address (the trusted proxy's client address when the
request comes from one of WEB_PROXY_ADDRESSES), in a window of ``window_s``: past ``per_user`` failures for a
name from one address, or ``per_address`` from an address, that pair or address gets ``429`` with
``Retry-After`` until the window ends.  A name is never locked out from everywhere: six wrong guesses from
anywhere used to lock an operator out for 15 minutes (Django-axes' default pairs the two the same way).
Nothing sleeps in a request thread, so ``/healthz`` and other users are never held up; a success clears only
that user's count (another account's login cannot reset an attacker's address), and the address's count only
decays.  Every replica reads the same counts.

:class:`HashGate` bounds the password checks running at once (each Argon2 verification takes the memory its
hash names: 64 MiB for argon2-cffi's default): three parallel wrong logins took the dashboard past its 256 MiB
limit.  A login that finds every slot taken, or its own address already checking one, answers 503 with
``Retry-After`` at once, before it is counted.
"""

from __future__ import annotations

import hashlib
import threading
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
        keys = [
            (self._key(f"{kind}-address", address), self.per_address, f"too many failures from {address}")
        ]
        if user is not None:
            keys.append(
                (
                    self._user_key(kind, user, address),
                    self.per_user,
                    f"too many failures for this user from {address}",
                )
            )
        return keys

    def _user_key(self, kind: str, user: str, address: str) -> str:
        return self._key(f"{kind}-user", f"{user.casefold()}\0{address}")

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
            pipe.delete(self._user_key(kind, user, address))
        pipe.execute()


class HashGate:
    """At most ``slots`` password checks at once in this process, at most one per client address (so one
    address cannot take every slot).  Parameters: slots (WEB_LOGIN_CONCURRENCY)."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def enter(self, address: str) -> bool:
        """Take a slot for ``address``; False (at once) when every slot, or this address's one, is taken."""
        with self._lock:
            if len(self._busy) >= self.slots or address in self._busy:
                return False
            self._busy.add(address)
            return True

    def leave(self, address: str) -> None:
        with self._lock:
            self._busy.discard(address)
