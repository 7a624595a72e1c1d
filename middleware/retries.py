"""Retries that never lose a message (replaces Dramatiq's ``Retries``).

Hooks: ``before_process_message`` (age limit), ``after_process_message``.

It concludes every attempt's :mod:`outcome`: ``Succeeded``, ``Skipped``
(the actor raised SkipWork), ``Retrying`` or ``Dead``.

Each failure is classified (errors.classify; upstream clients
raise PermanentError/TransientError for their own overrides):

* permanent -> the message is failed at once, dead-letter type from the error;
* transient -> retried with exponential backoff and full jitter
  (``base * 2**n * U(1, 2)``, capped at ``retry_backoff_max_ms``; a
  ``retry_after_ms`` carried by the exception wins) until the attempt or the
  time budget is spent, then dead-lettered as ``retries_exhausted``;
* wait (database or broker unreachable, a rate-limit wait, an upstream
  pause, a long job continuing behind others) -> retried like transient errors but without spending
  attempts, bounded by the time budget only; a wait the error marks ``charges_window=False`` (an
  upstream pause, a rate-limit share, ``Continue``) is not counted in the time budget either;
* hard timeout -> retried ``HARD_TIMEOUT_RETRIES`` times, then ``timeout``.

The retry copy is not enqueued here: it is attached as the message's
successor and enqueued atomically with the ack by the broker (brokers.settle),
so a broker fault at that moment leaves the original unacked.

Actor options:
  max_attempts(int): attempts before the message is dead (default: domain setting).
  retry_hours(float): total time budget measured from the first enqueue of this generation.
  throws(tuple[type[Exception], ...]): exceptions the actor expects: Dramatiq logs them at INFO
    without a traceback, and they are never retried (SkipWork still ends ``Skipped``).

Message options written on the retry copy: ``retries`` (failed attempts so
far), ``infra_retries``, ``budget_started_at`` (ms), ``attempt_history``
(last errors), ``last_error``.
"""

from __future__ import annotations

import random
from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.logging import get_logger
from dramatiq.middleware import Middleware, SkipMessage

from worker_service.errors import HardTimeout, SkipWork, Verdict, classify
from worker_service.outcome import (
    Dead,
    Retrying,
    Skipped,
    Succeeded,
    Successor,
    attempt_number,
    budget_start,
    conclude,
    kill,
    now_ms,
)

HISTORY_LIMIT = 10


def _compute_delay(retries: int, base_ms: int, max_ms: int) -> int:
    exponent = min(retries, 30)
    return int(min(max_ms, base_ms * (2**exponent) * random.uniform(1.0, 2.0)))


class Retries(Middleware):
    """Classified retries with attempt and time budgets.

    Parameters:
      max_attempts(int): default attempt budget.
      retry_hours(float): default time budget.
      backoff_base_ms(int), backoff_max_ms(int): backoff shape.
      hard_timeout_retries(int): retries after a hard timeout before it is final.
      max_age_ms(int): a first attempt that starts later than this after sending dies as ``age_limit``.
    """

    def __init__(
        self,
        *,
        max_attempts: int,
        retry_hours: float,
        backoff_base_ms: int,
        backoff_max_ms: int,
        hard_timeout_retries: int,
        max_age_ms: int | None = None,
    ) -> None:
        self.logger = get_logger(__name__, type(self))
        self.max_attempts = max_attempts
        self.retry_hours = retry_hours
        self.backoff_base_ms = backoff_base_ms
        self.backoff_max_ms = backoff_max_ms
        self.hard_timeout_retries = hard_timeout_retries
        self.max_age_ms = max_age_ms

    @property
    def actor_options(self) -> set[str]:
        return {"max_attempts", "retry_hours", "throws"}

    def _option(self, broker: dramatiq.Broker, message: MessageProxy, name: str, default: Any) -> Any:
        value = message.options.get(name)
        if value is None:
            try:
                value = broker.get_actor(message.actor_name).options.get(name)
            except Exception:  # noqa: BLE001 - unknown actor: use defaults
                value = None
        return default if value is None else value

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        """Age limit: a message whose generation is older than ``max_age_ms`` dies unprocessed."""
        if (
            self.max_age_ms
            and message.options.get("retries", 0) == 0
            and now_ms() - budget_start(message) > self.max_age_ms
        ):
            error = f"message is older than {self.max_age_ms / 3_600_000:g} h and was never started"
            kill(message, Dead.of("age_limit", TimeoutError(error)))
            raise SkipMessage(error)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        if message.failed:
            return
        if exception is None:
            return conclude(message, Succeeded())
        if isinstance(exception, SkipWork):
            return conclude(message, Skipped(str(exception)))
        verdict = classify(exception)
        actor = broker.actors.get(message.actor_name)
        throws = actor.options.get("throws") if actor is not None else None
        if throws and isinstance(exception, throws):  # expected by the actor: never retried (as in Dramatiq)
            verdict = Verdict("permanent", verdict.error_code, verdict.error_type)
        retries = int(message.options.get("retries", 0))
        max_attempts = int(self._option(broker, message, "max_attempts", self.max_attempts))
        window_ms = float(self._option(broker, message, "retry_hours", self.retry_hours)) * 3_600_000

        if verdict.kind == "permanent":
            return self._fail(message, verdict.error_type, verdict, exception)
        if (
            isinstance(exception, HardTimeout)
            and int(message.options.get("hard_timeouts", 0)) >= self.hard_timeout_retries
        ):
            return self._fail(message, "timeout", verdict, exception)

        spends_attempt = verdict.kind != "wait"
        next_retries = retries + 1 if spends_attempt else retries
        if spends_attempt and next_retries >= max_attempts:
            return self._fail(message, verdict.error_type, verdict, exception)
        infra = int(message.options.get("infra_retries", 0)) + (0 if spends_attempt else 1)
        delay = verdict.retry_after_ms
        if delay is None:
            delay = _compute_delay(
                next_retries - 1 if spends_attempt else infra - 1, self.backoff_base_ms, self.backoff_max_ms
            )
        started = budget_start(message)
        if not verdict.charges_window:
            started += delay  # the wait is not the message's: its budget resumes after it
        elif now_ms() + delay - started > window_ms:
            return self._fail(message, verdict.error_type, verdict, exception)
        self.schedule_retry(
            message,
            delay,
            exception,
            retries=next_retries,
            infra_retries=infra,
            extra={
                "hard_timeouts": int(message.options.get("hard_timeouts", 0))
                + (1 if isinstance(exception, HardTimeout) else 0),
                "budget_started_at": started,
            },
        )

    def schedule_retry(
        self,
        message: MessageProxy,
        delay_ms: int,
        exception: BaseException | None,
        *,
        retries: int,
        infra_retries: int,
        extra: dict[str, Any] | None = None,
    ) -> None:
        error = f"{type(exception).__name__}: {exception}"[:2000] if exception else None
        history = list(message.options.get("attempt_history") or [])
        if error:
            history = (history + [{"attempt": attempt_number(message), "at": now_ms(), "error": error}])[
                -HISTORY_LIMIT:
            ]
        options = {
            "retries": retries,
            "infra_retries": infra_retries,
            "budget_started_at": budget_start(message),
            "attempt_history": history,
            "last_error": error,
            **(extra or {}),
        }
        conclude(
            message,
            Retrying(now_ms() + delay_ms, error),
            Successor(message._message.copy(options=options), delay_ms),
        )
        self.logger.info(
            "Retrying message %s in %d ms (attempt %d failed: %s).",
            message.message_id,
            delay_ms,
            attempt_number(message),
            error,
        )

    def _fail(
        self, message: MessageProxy, error_type: str, verdict: Verdict, exception: BaseException
    ) -> None:
        kill(message, Dead.of(error_type, exception, error_code=verdict.error_code))
        self.logger.warning(
            "Message %s failed for good after %d attempt(s): %s (%s).",
            message.message_id,
            attempt_number(message),
            error_type,
            exception,
        )
