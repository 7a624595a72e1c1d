"""What processing one message concluded, and everything else the middleware keep about it.

One place, typed, instead of keys scattered over ``message.__dict__``:

* :data:`Outcome` is what an attempt concluded: :class:`Succeeded`,
  :class:`Skipped` (the work does not apply), :class:`Retrying` (at a time),
  :class:`Deferred` (put back without spending an attempt) or :class:`Dead`
  (dead-letter type, record error code, message, traceback).  Frozen; a later
  conclusion replaces an earlier one.
* :class:`Successor` is what the broker enqueues together with the ack (a
  retry, a deferral, a dead letter the database could not take yet).
* :class:`MessageState` holds the outcome, the successor, and the few private
  fields a middleware needs between its before- and after-hook.  It lives on
  the :class:`~dramatiq.broker.MessageProxy` of one delivery and dies with it.

Writers: validation, rate limit, status, retries (outcomes); the broker's
consumer (``Dead`` for crash loops, unknown actors and pending dead letters).
Readers: status, metrics, tracing, the dead-letter sink and the consumer.
"""

from __future__ import annotations

import time
import traceback as tb
from dataclasses import dataclass
from typing import Any

from dramatiq.message import Message

#: a dead letter the database could not take: carried in the message options until it can
PENDING_DEAD_LETTER = "dead_letter_pending"


@dataclass(frozen=True, slots=True)
class Succeeded:
    pass


@dataclass(frozen=True, slots=True)
class Skipped:
    """The work does not apply (e.g. no API key configured): terminal, never retried, not an error."""

    reason: str


@dataclass(frozen=True, slots=True)
class Retrying:
    at_ms: int
    error: str | None


@dataclass(frozen=True, slots=True)
class Deferred:
    """Put back for later without spending an attempt (rate limit, pause, outage)."""

    at_ms: int
    reason: str


@dataclass(frozen=True, slots=True)
class Dead:
    """Failed for good.

    ``error_type`` is the dead letter's type (docs/reliability.rst, "Dead letters"); ``error_code`` is what the
    tracked record shows (a domain code such as ``corrupt`` when one is known, else the type).
    """

    error_type: str
    error_code: str
    error_message: str
    exception_type: str | None = None
    traceback: str | None = None

    @classmethod
    def of(
        cls,
        error_type: str,
        exception: BaseException | None,
        *,
        error_code: str | None = None,
        error_message: str | None = None,
        traceback: str | None = None,
    ) -> Dead:
        if traceback is None and exception is not None and exception.__traceback__ is not None:
            traceback = "".join(tb.format_exception(type(exception), exception, exception.__traceback__))
        if error_message is None:
            error_message = str(exception) if exception is not None else ""
        return cls(
            error_type=error_type,
            error_code=error_code or error_type,
            error_message=error_message[:10_000],
            exception_type=type(exception).__name__ if exception is not None else None,
            traceback=traceback[-20_000:] if traceback else None,
        )

    def as_option(self) -> dict[str, Any]:
        """The JSON form carried in ``options[PENDING_DEAD_LETTER]``."""
        return {
            "error_type": self.error_type,
            "error_code": self.error_code,
            "error_message": self.error_message,
            "exception_type": self.exception_type,
            "traceback": self.traceback,
        }

    @classmethod
    def from_option(cls, value: Any) -> Dead:
        value = value if isinstance(value, dict) else {}
        error_type = str(value.get("error_type") or "permanent_error")
        return cls(
            error_type=error_type,
            error_code=str(value.get("error_code") or error_type),
            error_message=str(value.get("error_message") or ""),
            exception_type=value.get("exception_type"),
            traceback=value.get("traceback"),
        )


Outcome = Succeeded | Skipped | Retrying | Deferred | Dead


@dataclass(frozen=True, slots=True)
class Successor:
    """A message the broker enqueues in the same step as the ack (``delay_ms`` None: at once)."""

    message: Message
    delay_ms: int | None = None


@dataclass(slots=True)
class MessageState:
    """Per-delivery state.  ``outcome``/``successor`` are shared; the rest belongs to one middleware each."""

    outcome: Outcome | None = None
    successor: Successor | None = None
    #: status: this delivery moved its record to ``processing``, so it finishes it
    record_started: bool = False
    #: metrics: monotonic start time
    started_at: float | None = None
    #: rate limit: concurrency lease (actor name, holder id)
    lease: tuple[str, str] | None = None
    #: context and tracing: tokens to undo in the after-hook
    log_token: Any = None
    trace: Any = None


_ATTR = "_worker_state"


def state_of(message: Any) -> MessageState:
    """The state of this delivery, created on first use."""
    state = message.__dict__.get(_ATTR)
    if state is None:
        state = message.__dict__[_ATTR] = MessageState()
    return state


def outcome_of(message: Any) -> Outcome | None:
    state = message.__dict__.get(_ATTR)
    return state.outcome if state is not None else None


def successor_of(message: Any) -> Successor | None:
    state = message.__dict__.get(_ATTR)
    return state.successor if state is not None else None


def conclude(message: Any, outcome: Outcome, successor: Successor | None = None) -> None:
    """Record what this attempt concluded (and what the broker enqueues with the ack, if anything)."""
    state = state_of(message)
    state.outcome = outcome
    if successor is not None:
        state.successor = successor


def kill(message: Any, dead: Dead) -> None:
    """Conclude ``dead`` and mark the message failed: the consumer hands it to the dead-letter sink."""
    conclude(message, dead)
    message.fail()


def now_ms() -> int:
    return int(time.time() * 1000)


def attempt_number(message: Any) -> int:
    """1-based number of the attempt this delivery is."""
    return int(message.options.get("retries", 0)) + 1


def budget_start(message: Any) -> int:
    """When this generation's time budget (``retry_hours``) started, in epoch ms; uncharged waits move it on."""
    return int(message.options.get("budget_started_at") or message.message_timestamp)


def defer(message: Any, delay_ms: int, reason: str, *, charge_window: bool = True) -> None:
    """Put a message back for later without spending an attempt (rate limits, pauses, outages).

    ``charge_window=False``: the delay does not count in the time budget (an upstream pause: a daily
    spending cap may hold messages for hours, and must not kill them).  The caller then raises
    SkipMessage; the broker enqueues the copy with the ack.
    """
    if successor_of(message) is not None:
        return
    options: dict[str, Any] = {
        "deferrals": int(message.options.get("deferrals", 0)) + 1,
        "last_deferral": reason,
    }
    if not charge_window:
        options["budget_started_at"] = budget_start(message) + delay_ms
    conclude(
        message,
        Deferred(now_ms() + delay_ms, reason),
        Successor(message._message.copy(options=options), delay_ms),
    )
