"""middleware.retries: every attempt concludes one outcome; budgets, backoff, waits, expected exceptions."""

from __future__ import annotations

import time

import pytest
from dramatiq.middleware import SkipMessage

from middleware.retries import Retries
from tests.support.units import proxy, stub_broker
from worker_service.database import DatabaseUnavailable
from worker_service.errors import HardTimeout, PermanentError, SkipWork, TransientError
from worker_service.outcome import Dead, Retrying, Skipped, Succeeded, outcome_of, successor_of

BASE, MAX = 1_000, 60_000


def _retries(**kwargs) -> Retries:
    return Retries(
        **{
            "max_attempts": 3,
            "retry_hours": 1.0,
            "backoff_base_ms": BASE,
            "backoff_max_ms": MAX,
            "hard_timeout_retries": 1,
            "max_age_ms": 3_600_000,
            **kwargs,
        }
    )


@pytest.fixture()
def broker():
    return stub_broker(noop={}, expects={"throws": (KeyError,)})


def test_success_and_skip_are_concluded_not_retried(broker):
    ok, skipped = proxy(), proxy()
    _retries().after_process_message(broker, ok)
    _retries().after_process_message(broker, skipped, exception=SkipWork("no key"))
    assert outcome_of(ok) == Succeeded() and outcome_of(skipped) == Skipped("no key")
    assert successor_of(ok) is None and not skipped.failed


def test_transient_error_is_retried_with_backoff_and_history(broker):
    message = proxy()
    before = int(time.time() * 1000)
    _retries().after_process_message(broker, message, exception=TransientError("upstream 503"))
    outcome, successor = outcome_of(message), successor_of(message)
    assert isinstance(outcome, Retrying) and "upstream 503" in outcome.error
    assert BASE <= successor.delay_ms <= 2 * BASE  # base * 2**0 * U(1, 2)
    assert outcome.at_ms >= before + BASE
    options = successor.message.options
    assert options["retries"] == 1 and options["attempt_history"][0]["attempt"] == 1
    assert options["budget_started_at"] == message.message_timestamp
    assert not message.failed


def test_last_attempt_dies_with_the_final_error_and_its_traceback(broker):
    message = proxy(retries=2)  # the third of three attempts
    try:
        raise TransientError("still 503")
    except TransientError as exc:
        _retries().after_process_message(broker, message, exception=exc)
    dead = outcome_of(message)
    assert message.failed and isinstance(dead, Dead)
    assert (dead.error_type, dead.error_message) == ("retries_exhausted", "still 503")
    assert "still 503" in dead.traceback


def test_permanent_error_dies_at_once_with_its_domain_code(broker):
    message = proxy()
    _retries().after_process_message(
        broker, message, exception=PermanentError("bad xref", error_code="corrupt")
    )
    dead = outcome_of(message)
    assert message.failed and (dead.error_type, dead.error_code) == ("permanent_error", "corrupt")


def test_an_outage_waits_without_spending_an_attempt(broker):
    message = proxy(retries=2)  # even on the last attempt
    _retries().after_process_message(broker, message, exception=DatabaseUnavailable("connection refused"))
    successor = successor_of(message)
    assert not message.failed and isinstance(outcome_of(message), Retrying)
    assert successor.message.options["retries"] == 2 and successor.message.options["infra_retries"] == 1


def test_retry_after_from_the_upstream_wins_over_the_backoff(broker):
    message = proxy()
    _retries().after_process_message(broker, message, exception=TransientError("429", retry_after_ms=7_000))
    assert successor_of(message).delay_ms == 7_000


def test_a_retry_past_the_time_budget_dies_instead(broker):
    two_hours_ago = int(time.time() * 1000) - 7_200_000
    message = proxy(timestamp=two_hours_ago)
    _retries(max_age_ms=None).after_process_message(broker, message, exception=TransientError("503"))
    assert message.failed and outcome_of(message).error_type == "retries_exhausted"


def test_hard_timeout_gets_its_retries_then_dies_as_timeout(broker):
    first, second = proxy(), proxy(hard_timeouts=1, retries=1)
    _retries().after_process_message(broker, first, exception=HardTimeout("killed at 60 s"))
    _retries().after_process_message(broker, second, exception=HardTimeout("killed at 60 s"))
    assert successor_of(first).message.options["hard_timeouts"] == 1
    assert second.failed and outcome_of(second).error_type == "timeout"


def test_a_message_never_started_within_the_age_limit_dies_before_its_actor(broker):
    message = proxy(timestamp=int(time.time() * 1000) - 7_200_000)
    with pytest.raises(SkipMessage):
        _retries().before_process_message(broker, message)
    assert message.failed and outcome_of(message).error_type == "age_limit"
    _retries().before_process_message(broker, proxy(timestamp=int(time.time() * 1000) - 7_200_000, retries=1))


def test_an_exception_the_actor_declares_in_throws_is_not_retried(broker):
    message = proxy("expects")
    _retries().after_process_message(broker, message, exception=KeyError("no such row"))
    assert message.failed and isinstance(outcome_of(message), Dead)


def test_a_wait_that_charges_the_window_dies_when_it_would_end_past_it(broker):
    """A database outage (a wait that counts) still ends at the time budget."""
    two_hours_ago = int(time.time() * 1000) - 2 * 3_600_000
    message = proxy(timestamp=two_hours_ago)
    _retries().after_process_message(broker, message, exception=DatabaseUnavailable("down"))
    assert message.failed and outcome_of(message).error_type == "retries_exhausted"


def test_an_upstream_pause_is_not_counted_in_the_time_budget(broker):
    """A daily spending cap pauses OpenRouter for up to 24 h: the messages waiting for it must not die of a
    1 h budget, now or at their next transient error (their budget resumes after the pause)."""
    from worker_service.ratelimit import RateLimited

    started = int(time.time() * 1000) - 30 * 60_000  # half of the 1 h budget is gone
    message = proxy(timestamp=started)
    pause_ms = 20 * 3_600_000
    _retries().after_process_message(
        broker, message, exception=RateLimited("openrouter", pause_ms, paused=True)
    )
    assert not message.failed and isinstance(outcome_of(message), Retrying)
    successor = successor_of(message)
    assert successor.delay_ms == pause_ms
    assert successor.message.options["budget_started_at"] == started + pause_ms
    assert successor.message.options["retries"] == 0  # no attempt spent either


def test_a_deferral_before_start_for_a_pause_moves_the_budget_on():
    from worker_service.outcome import defer

    message = proxy(budget_started_at=1_000)
    defer(message, 5_000, "upstream openrouter paused", charge_window=False)
    assert successor_of(message).message.options["budget_started_at"] == 6_000
    counted = proxy(budget_started_at=1_000)
    defer(counted, 5_000, "database_unavailable")
    assert successor_of(counted).message.options["budget_started_at"] == 1_000


def test_continue_requeues_at_once_without_spending_an_attempt(broker):
    from worker_service.errors import Continue

    message = proxy(retries=2)  # would be the last attempt
    _retries().after_process_message(broker, message, exception=Continue("40 of 200 chunks done"))
    assert not message.failed
    successor = successor_of(message)
    assert successor.delay_ms == 0 and successor.message.options["retries"] == 2
