"""web.throttle.HashGate and web.users' dummy hash: what keeps parallel logins from exhausting memory."""

from __future__ import annotations

from argon2 import extract_parameters

from worker_service.web.throttle import HashGate
from worker_service.web.users import _DUMMY_HASH, _HASHER


def test_the_gate_lets_through_its_slots_and_one_check_per_address():
    gate = HashGate(2)
    assert gate.enter("10.0.0.1") and not gate.enter("10.0.0.1")  # one address holds one slot at most
    assert gate.enter("10.0.0.2") and not gate.enter("10.0.0.3")  # every slot taken
    gate.leave("10.0.0.1")
    assert gate.enter("10.0.0.3")


def test_an_unknown_user_costs_what_a_real_password_check_costs():
    """The dummy hash is a literal (importing hashes nothing) with the parameters real hashes get."""
    ours = extract_parameters(_DUMMY_HASH)
    real = extract_parameters(_HASHER.hash("a real password of some length"))
    assert (ours.type, ours.memory_cost, ours.time_cost, ours.parallelism) == (
        real.type,
        real.memory_cost,
        real.time_cost,
        real.parallelism,
    )
