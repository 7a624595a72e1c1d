"""OpenRouter chat-completions client (requests), with this upstream's error overrides.

Every HTTP request first takes a slot from the fleet-wide limiter (upstream
``openrouter``).  Answers map onto the retry middleware's classes:

======================  ==========================================================================
400, 401, 403, 404      PermanentError (``openrouter_<status>``), with the upstream's message
402 (no credits)        the upstream is paused fleet-wide for OPENROUTER_PAYMENT_PAUSE_SECONDS and
                        the message waits (no attempt spent); logged at CRITICAL for alerting
429                     paused fleet-wide for Retry-After (or X-RateLimit-Reset, seconds or epoch
                        ms), the message waits (no attempt spent)
408, 5xx, timeouts      TransientError (Retry-After honoured)
200 with an error       treated as the error's own code
======================  ==========================================================================
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import requests

from worker_service.errors import PermanentError, TransientError
from worker_service.observability.metrics import COST, REQUESTS, TOKENS
from worker_service.ratelimit import RateLimited, RateLimiter

logger = logging.getLogger(__name__)
UPSTREAM = "openrouter"
DEFAULT_429_PAUSE_MS = 10_000


@dataclass
class Usage:
    requests: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0

    def add(self, usage: dict[str, Any] | None) -> None:
        self.requests += 1
        if usage:
            prompt, completion = (
                int(usage.get("prompt_tokens") or 0),
                int(usage.get("completion_tokens") or 0),
            )
            cost = float(usage.get("cost") or 0.0)
            self.prompt_tokens += prompt
            self.completion_tokens += completion
            self.cost_usd += cost
            TOKENS.labels("prompt").inc(prompt)
            TOKENS.labels("completion").inc(completion)
            COST.inc(cost)


@dataclass
class OpenRouterClient:
    """Parameters: base_url (with /api/v1), api_key, model, limiter, timeouts, attribution, payment pause."""

    base_url: str
    api_key: str
    model: str
    limiter: RateLimiter
    timeout_s: float = 120.0
    connect_timeout_s: float = 10.0
    app_url: str | None = None
    app_title: str | None = None
    payment_pause_ms: int = 600_000
    session: requests.Session = field(default_factory=requests.Session)

    def _headers(self) -> dict[str, str]:
        headers = {"Authorization": f"Bearer {self.api_key}", "Content-Type": "application/json"}
        if self.app_url:
            headers["HTTP-Referer"] = self.app_url
        if self.app_title:
            headers["X-OpenRouter-Title"] = self.app_title
        return headers

    def chat(self, messages: list[dict[str, str]], *, schema: dict[str, Any], usage: Usage) -> str:
        """One completion constrained by a JSON schema; returns the message content (not yet validated)."""
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "knowledge_graph", "strict": True, "schema": schema},
            },
        }
        self.limiter.slot(UPSTREAM)
        try:
            response = self.session.post(
                f"{self.base_url.rstrip('/')}/chat/completions",
                json=body,
                headers=self._headers(),
                timeout=(self.connect_timeout_s, self.timeout_s),
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(
                f"OpenRouter unreachable: {exc}", error_code="openrouter_unreachable"
            ) from None
        payload = _json(response)
        REQUESTS.labels(UPSTREAM, str(response.status_code)).inc()
        if response.status_code != 200:
            self._raise_for(response.status_code, payload, response)
        if isinstance(payload, dict) and payload.get("error"):
            self._raise_for(error_status(payload["error"], default=500), payload, response)
        try:
            choice = payload["choices"][0]
        except (KeyError, IndexError, TypeError):
            raise TransientError(
                "OpenRouter answered 200 without choices", error_code="openrouter_bad_response"
            ) from None
        usage.add(payload.get("usage"))
        if choice.get("error") or choice.get("finish_reason") == "error":
            error = choice.get("error") or {"code": 502, "message": "generation failed"}
            self._raise_for(error_status(error, default=502), {"error": error}, response)
        return choice.get("message", {}).get("content") or ""

    def _raise_for(self, status: int, payload: Any, response: requests.Response) -> None:
        message = _error_message(payload) or response.reason or "error"
        if status == 402:
            self.limiter.pause(UPSTREAM, self.payment_pause_ms, f"402 payment required: {message}")
            logger.critical(
                "OpenRouter credits exhausted (402): %s; upstream paused for %d s",
                message,
                self.payment_pause_ms // 1000,
                extra={"alert": "openrouter_credits_exhausted"},
            )
            raise RateLimited(UPSTREAM, self.payment_pause_ms, paused=True)
        if status == 429:
            pause = retry_after_ms(response) or DEFAULT_429_PAUSE_MS
            self.limiter.pause(UPSTREAM, pause, f"429: {message}")
            raise RateLimited(UPSTREAM, pause, paused=True)
        if status in (408,) or status >= 500:
            raise TransientError(
                f"OpenRouter {status}: {message}",
                error_code=f"openrouter_{status}",
                retry_after_ms=retry_after_ms(response),
            )
        raise PermanentError(f"OpenRouter {status}: {message}", error_code=f"openrouter_{status}")


#: OpenRouter's typed errors (``error.metadata.error_type``, or a ``code`` that is a name rather than a number)
#: -> the HTTP status they are documented with (reference/apis.md, "Typed errors")
ERROR_TYPE_STATUS = {
    "context_length_exceeded": 400,
    "max_tokens_exceeded": 400,
    "token_limit_exceeded": 400,
    "string_too_long": 400,
    "invalid_request": 400,
    "invalid_prompt": 400,
    "content_policy_violation": 400,
    "refusal": 400,
    "model_not_found": 400,
    "authentication": 401,
    "payment_required": 402,
    "permission_denied": 403,
    "not_found": 404,
    "no_endpoints": 404,
    "free_variant_ended": 404,
    "timeout": 408,
    "payload_too_large": 413,
    "unprocessable": 422,
    "rate_limit_exceeded": 429,
    "capacity_exhausted": 429,
    "server": 500,
    "unmapped": 500,
    "provider_unavailable": 502,
    "provider_overloaded": 503,
    "temporarily_unavailable": 503,
}


def error_status(error: Any, *, default: int) -> int:
    """The HTTP status an error object means: its numeric ``code``; else its typed name (``code`` or
    ``metadata.error_type``); else ``default`` (a server-side failure: retried, never taken as permanent)."""
    if not isinstance(error, dict):
        return default
    code = error.get("code")
    if isinstance(code, bool):
        code = None
    if isinstance(code, int | float):
        return int(code)
    if isinstance(code, str):
        if code.strip().isdigit():
            return int(code.strip())
        if code.strip().lower() in ERROR_TYPE_STATUS:
            return ERROR_TYPE_STATUS[code.strip().lower()]
    metadata = error.get("metadata")
    error_type = metadata.get("error_type") if isinstance(metadata, dict) else None
    if isinstance(error_type, str) and error_type.lower() in ERROR_TYPE_STATUS:
        return ERROR_TYPE_STATUS[error_type.lower()]
    return default


def retry_after_ms(response: requests.Response) -> int | None:
    value = response.headers.get("Retry-After")
    if value:
        try:
            return max(0, int(float(value) * 1000))
        except ValueError:
            return None
    reset = response.headers.get("X-RateLimit-Reset")
    if reset:
        try:
            number = float(reset)
        except ValueError:
            return None
        now = time.time()
        if number > 1e11:  # epoch milliseconds
            return max(0, int(number - now * 1000))
        if number > 1e9:  # epoch seconds
            return max(0, int((number - now) * 1000))
        return int(number * 1000)  # seconds from now
    return None


def _json(response: requests.Response) -> Any:
    try:
        return response.json()
    except (ValueError, json.JSONDecodeError):
        return None


def _error_message(payload: Any) -> str | None:
    if isinstance(payload, dict) and isinstance(payload.get("error"), dict):
        return str(payload["error"].get("message") or "")[:500]
    return None
