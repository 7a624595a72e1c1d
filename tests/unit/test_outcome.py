"""The typed outcome of a message, the broker contract, and how the consumer turns them into dead letters.

Unit tests: no broker, no database."""

from __future__ import annotations

import dataclasses
import time
import uuid

import pytest
from dramatiq.broker import MessageProxy
from dramatiq.errors import ActorNotFound
from dramatiq.message import Message

from worker_service.brokers.settle import ReliableBroker, dead_letter_of
from worker_service.outcome import (
    Dead,
    Retrying,
    Succeeded,
    Successor,
    conclude,
    kill,
    outcome_of,
    state_of,
    successor_of,
)


def _proxy(**options) -> MessageProxy:
    return MessageProxy(
        Message(
            queue_name="assets",
            actor_name="process_asset",
            args=(),
            kwargs={"asset_id": "a", "source": "file:a"},
            options=options,
            message_id=str(uuid.uuid4()),
            message_timestamp=int(time.time() * 1000),
        )
    )


def test_a_fresh_delivery_has_no_outcome_and_no_successor():
    proxy = _proxy()
    assert outcome_of(proxy) is None and successor_of(proxy) is None
    assert state_of(proxy) is state_of(proxy)  # one state per delivery


def test_outcomes_are_frozen_and_a_later_conclusion_replaces_an_earlier_one():
    proxy = _proxy()
    conclude(proxy, Retrying(123, "TransientError: x"), Successor(proxy._message.copy(), 5_000))
    with pytest.raises(dataclasses.FrozenInstanceError):
        outcome_of(proxy).at_ms = 0  # type: ignore[union-attr]
    conclude(proxy, Succeeded())
    assert outcome_of(proxy) == Succeeded()
    assert successor_of(proxy).delay_ms == 5_000  # concluding without a successor keeps the one set


def test_kill_fails_the_message_with_its_dead_letter():
    proxy = _proxy()
    kill(proxy, Dead.of("invalid_payload", ValueError("source: field required")))
    assert proxy.failed
    dead = outcome_of(proxy)
    assert isinstance(dead, Dead)
    assert (dead.error_type, dead.error_code, dead.exception_type) == (
        "invalid_payload",
        "invalid_payload",
        "ValueError",
    )
    assert dead.error_message == "source: field required"


def test_dead_keeps_a_domain_code_apart_from_its_dead_letter_type_and_its_traceback():
    try:
        raise RuntimeError("bad xref table")
    except RuntimeError as exc:
        dead = Dead.of("permanent_error", exc, error_code="corrupt")
    assert (dead.error_type, dead.error_code) == ("permanent_error", "corrupt")
    assert dead.traceback and "bad xref table" in dead.traceback


def test_pending_marker_round_trips_through_json_options():
    import json

    dead = Dead.of("crash_loop", RuntimeError("worker process died 3 times"))
    carried = json.loads(json.dumps(dead.as_option()))
    assert Dead.from_option(carried) == dead
    assert Dead.from_option(None).error_type == "permanent_error"  # a foreign or mangled marker still dies


def test_consumer_rejections_name_their_reason():
    proxy = _proxy()
    proxy.stuff_exception(ActorNotFound("nope"))
    assert dead_letter_of(proxy).error_type == "unknown_actor"
    proxy = _proxy()
    kill(proxy, Dead.of("age_limit", TimeoutError("too old")))
    assert dead_letter_of(proxy).error_type == "age_limit"
    assert dead_letter_of(_proxy()).error_type == "permanent_error"


@pytest.mark.parametrize("kind", ["redis", "rabbitmq"])
def test_both_brokers_implement_the_reliable_broker_protocol(kind):
    from worker_service.brokers.rabbitmq import ReliableRabbitmqBroker
    from worker_service.brokers.redis import ReliableRedisBroker

    cls = ReliableRedisBroker if kind == "redis" else ReliableRabbitmqBroker
    broker = (
        cls(middleware=[])
        if kind == "redis"
        else cls(url="amqp://guest:guest@127.0.0.1:1/%2F", middleware=[])
    )
    assert isinstance(broker, ReliableBroker)
