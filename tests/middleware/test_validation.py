"""middleware.validation: a payload the contract refuses dies as invalid_payload before its actor runs."""

from __future__ import annotations

import pytest
from dramatiq.middleware import SkipMessage

from middleware.validation import Validation
from outcome import Dead, outcome_of
from tests.support.units import proxy, stub_broker


def test_a_valid_payload_passes_untouched():
    message = proxy("process_asset", queue="assets", kwargs={"asset_id": "a", "source": "file:a.pdf"})
    Validation().before_process_message(stub_broker(), message)
    assert outcome_of(message) is None and not message.failed


@pytest.mark.parametrize(("kwargs", "args", "reason"), [
    ({"asset_id": "a"}, (), "source"),
    ({"asset_id": "a", "source": "ftp://x"}, (), "source"),
    ({"asset_id": "a", "source": "file:a", "colour": "red"}, (), "colour"),
    ({}, ("a", "file:a"), "positional"),
])
def test_an_invalid_payload_dies_as_invalid_payload(kwargs, args, reason):
    message = proxy("process_asset", queue="assets", kwargs=kwargs)
    message._message = message._message.copy(args=args)
    with pytest.raises(SkipMessage):
        Validation().before_process_message(stub_broker(), message)
    dead = outcome_of(message)
    assert message.failed and isinstance(dead, Dead) and dead.error_type == "invalid_payload"
    assert reason in dead.error_message


def test_actors_without_a_contract_are_not_checked():
    message = proxy("some_test_actor", kwargs={"anything": 1})
    Validation().before_process_message(stub_broker(), message)
    assert outcome_of(message) is None
