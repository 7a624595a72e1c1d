"""middleware.validation: a payload the contract refuses dies as invalid_payload before its actor runs."""

from __future__ import annotations

import pytest
from dramatiq.middleware import SkipMessage

from middleware.validation import Validation
from tests.support.units import proxy, stub_broker
from worker_service.outcome import Dead, outcome_of


def test_a_valid_payload_passes_untouched():
    message = proxy("process_asset", queue="assets", kwargs={"asset_id": "a", "source": "file:a.pdf"})
    Validation().before_process_message(stub_broker(), message)
    assert outcome_of(message) is None and not message.failed


@pytest.mark.parametrize(
    ("kwargs", "args", "reason"),
    [
        ({"asset_id": "a"}, (), "source"),
        ({"asset_id": "a", "source": "ftp://x"}, (), "source"),
        ({"asset_id": "a", "source": "file:a", "colour": "red"}, (), "colour"),
        ({}, ("a", "file:a"), "positional"),
    ],
)
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


def test_a_message_of_a_sender_older_than_the_versioning_is_taken_as_1_0():
    """New worker, old sender: no ``contract_version`` option at all."""
    message = proxy("process_asset", queue="assets", kwargs={"asset_id": "a", "source": "file:a.pdf"})
    assert "contract_version" not in message.options
    Validation().before_process_message(stub_broker(), message)
    assert outcome_of(message) is None and not message.failed


def test_an_optional_field_of_a_newer_minor_version_is_left_out_for_this_worker():
    """Old worker, new sender (a rolling deploy): contract 1.9 added ``priority``; this worker runs the rest."""
    message = proxy(
        "process_asset",
        queue="assets",
        contract_version="1.9",
        kwargs={"asset_id": "a", "source": "file:a.pdf", "priority": "high"},
    )
    Validation().before_process_message(stub_broker(), message)
    assert outcome_of(message) is None and not message.failed
    assert message.kwargs == {"asset_id": "a", "source": "file:a.pdf"}  # what the actor gets


def test_an_unknown_field_of_this_version_is_still_a_typo():
    message = proxy(
        "process_asset",
        queue="assets",
        contract_version="1.1",
        kwargs={"asset_id": "a", "source": "file:a.pdf", "priority": "high"},
    )
    with pytest.raises(SkipMessage):
        Validation().before_process_message(stub_broker(), message)
    assert "priority" in outcome_of(message).error_message


@pytest.mark.parametrize("version", ["2.0", "0.9", "one"])
def test_another_major_version_is_refused_with_a_clear_reason(version):
    message = proxy(
        "process_asset",
        queue="assets",
        contract_version=version,
        kwargs={"asset_id": "a", "source": "file:a.pdf"},
    )
    with pytest.raises(SkipMessage):
        Validation().before_process_message(stub_broker(), message)
    dead = outcome_of(message)
    assert message.failed and dead.error_type == "invalid_payload" and "contract" in dead.error_message
    assert version in dead.error_message


def test_the_sender_says_which_contract_version_it_speaks():
    from worker_contracts import CONTRACT_VERSION, build_message

    assert (
        build_message("extract_knowledge", {"asset_id": "a"})["options"]["contract_version"]
        == CONTRACT_VERSION
    )
