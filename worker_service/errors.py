"""Error classes the domain code raises, and the default transient/permanent classification.

Domain code raises :class:`PermanentError` (with an ``error_code``) or
:class:`TransientError` (optionally with ``retry_after_ms``); everything else
is classified by :func:`classify`.  Upstream clients map their HTTP answers
onto these classes (their overrides live next to them).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from typing import Literal

from pydantic import ValidationError

#: permanent: dead at once; transient: retried, spends an attempt; wait: retried, spends no attempt
#: (an outage of our own infrastructure, a rate-limit wait or an upstream pause)
Kind = Literal["permanent", "transient", "wait"]


class PermanentError(Exception):
    """Retrying cannot help (bad input, refused by an upstream).  Dead-lettered at once."""

    error_type = "permanent_error"

    def __init__(self, message: str, *, error_code: str = "permanent_error") -> None:
        super().__init__(message)
        self.error_code = error_code


class TransientError(Exception):
    """Retrying later may help; ``retry_after_ms`` overrides the backoff when given.

    ``spends_attempt=False`` marks a wait (rate limit, upstream pause) that must not use up the budget;
    ``charges_window=False``, a wait that the time budget (``retry_hours``) does not count either: an
    upstream pause or a fair share of a rate limit says nothing about the message.
    """

    def __init__(
        self,
        message: str,
        *,
        error_code: str = "transient",
        retry_after_ms: int | None = None,
        spends_attempt: bool = True,
        charges_window: bool = True,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.retry_after_ms = retry_after_ms
        self.spends_attempt = spends_attempt
        self.charges_window = charges_window


class Continue(TransientError):  # noqa: N818 - it is a signal, not an error
    """The work made progress that is saved and goes on in a new delivery, behind the messages queued
    meanwhile (a long document yields its thread so that small ones are not starved).  Spends no attempt."""

    def __init__(self, message: str) -> None:
        super().__init__(
            message, error_code="continued", retry_after_ms=0, spends_attempt=False, charges_window=False
        )


class InvalidPayload(PermanentError):
    error_type = "invalid_payload"

    def __init__(self, message: str) -> None:
        super().__init__(message, error_code="invalid_payload")


class Forbidden(PermanentError):
    error_type = "forbidden"

    def __init__(self, message: str, *, error_code: str = "forbidden") -> None:
        super().__init__(message, error_code=error_code)


class HardTimeout(Exception):
    """Work in a hard-limited child ran past its deadline and was killed."""

    error_code = "timeout"


class MemoryLimitExceeded(Exception):
    """Work in a hard-limited child hit its memory cap and was stopped."""

    error_code = "memory"


class SkipWork(Exception):  # noqa: N818 - it is a signal, not an error
    """The work does not apply (e.g. no API key configured): status ``skipped``, never retried."""


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    error_code: str
    error_type: str  # dead-letter error_type if this ends the message
    retry_after_ms: int | None = None
    charges_window: bool = True  # False: the wait before the retry is not counted in the time budget


def _http_status(exc: BaseException) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def classify(exc: BaseException) -> Verdict:
    """Default classification; see docs/reliability.rst, "Retries"."""
    from worker_service.database.connection import DatabaseUnavailable

    if isinstance(exc, PermanentError):
        return Verdict("permanent", exc.error_code, exc.error_type)
    if isinstance(exc, TransientError):
        kind: Kind = "transient" if getattr(exc, "spends_attempt", True) else "wait"
        return Verdict(
            kind,
            exc.error_code,
            "retries_exhausted",
            exc.retry_after_ms,
            getattr(exc, "charges_window", True),
        )
    if isinstance(exc, HardTimeout):
        return Verdict("transient", "timeout", "timeout")
    if isinstance(exc, MemoryLimitExceeded | MemoryError):
        return Verdict("permanent", "memory", "memory")
    if isinstance(exc, DatabaseUnavailable):
        return Verdict("wait", "database_unavailable", "retries_exhausted")
    if isinstance(exc, ValidationError):
        return Verdict("permanent", "invalid_payload", "invalid_payload")
    try:
        import requests

        if isinstance(exc, requests.HTTPError):
            status = _http_status(exc) or 0
            if status in (408, 429) or status >= 500:
                return Verdict("transient", f"http_{status}", "retries_exhausted")
            return Verdict("permanent", f"http_{status}", "permanent_error")
        if isinstance(exc, requests.ConnectionError | requests.Timeout):
            return Verdict("transient", "connection", "retries_exhausted")
    except ImportError:  # pragma: no cover - requests is a hard dependency
        pass
    try:
        import redis

        if isinstance(exc, redis.ConnectionError | redis.TimeoutError):
            return Verdict("wait", "broker_unavailable", "retries_exhausted")
    except ImportError:  # pragma: no cover
        pass
    if isinstance(exc, ConnectionError | TimeoutError | socket.timeout):
        return Verdict("transient", "connection", "retries_exhausted")
    from dramatiq.middleware.time_limit import TimeLimitExceeded

    if isinstance(exc, TimeLimitExceeded):
        return Verdict("transient", "timeout", "timeout")
    if isinstance(exc, ValueError | TypeError | KeyError | LookupError):
        return Verdict("permanent", "permanent_error", "permanent_error")
    return Verdict("transient", "error", "retries_exhausted")
