"""Leases of records under way (database.tracks, middleware.leases): set at every transition, renewed while the
message runs or waits in a worker, cleared when terminal; the reconciler finds only the expired ones."""

from __future__ import annotations

import time
import uuid
from datetime import timedelta
from types import SimpleNamespace

import pytest
from dramatiq.broker import MessageProxy
from dramatiq.message import Message

from middleware.leases import Leases
from worker_service.database import Asset, init_database, migrate, session, tracks, utcnow
from worker_service.reconciliation import load_candidates

ASSET = tracks.TRACKS["asset"]


class _Broker:
    def __init__(self) -> None:
        self.held: list[MessageProxy] = []

    def get_actor(self, name: str) -> SimpleNamespace:
        return SimpleNamespace(options={"status_track": "asset"})

    def held_messages(self) -> list[MessageProxy]:
        return self.held


@pytest.fixture(autouse=True)
def database(tmp_path):
    init_database(f"sqlite:///{tmp_path}/leases.db")
    migrate()


def _message(asset_id: str) -> MessageProxy:
    return MessageProxy(
        Message(
            queue_name="assets",
            actor_name="process_asset",
            args=(),
            kwargs={"asset_id": asset_id, "source": "file:x"},
            options={},
            message_id=str(uuid.uuid4()),
            message_timestamp=int(time.time() * 1000),
        )
    )


def _lease(asset_id: str):
    with session():
        return Asset.get_by_id(asset_id).lease_at


def _age(asset_id: str, seconds: float) -> None:
    with session(transaction=True):
        Asset.update(lease_at=utcnow() - timedelta(seconds=seconds)).where(
            Asset.asset_id == asset_id
        ).execute()


def test_each_transition_sets_the_lease_and_a_terminal_one_clears_it():
    message = _message("a")
    generation = tracks.generation_of(message)
    with session(transaction=True):
        assert tracks.start(ASSET, "a", message.kwargs, generation, 1) == "started"
    assert _lease("a") is not None
    retry_at = utcnow() + timedelta(minutes=10)
    with session(transaction=True):
        tracks.finish(ASSET, "a", generation, ASSET.values(status="retrying", next_attempt_at=retry_at))
    assert _lease("a") == retry_at  # a delayed retry is not due before its next attempt
    with session(transaction=True):
        tracks.start(ASSET, "a", message.kwargs, generation, 2)
        tracks.finish(ASSET, "a", generation, ASSET.values(status="extracted"))
    assert _lease("a") is None


def test_only_expired_leases_are_candidates_oldest_first():
    for name, age in (("fresh", 1), ("old", 120), ("older", 600)):
        message = _message(name)
        with session(transaction=True):
            tracks.start(ASSET, name, message.kwargs, tracks.generation_of(message), 1)
        _age(name, age)
    assert [c.asset_id for c in load_candidates(ASSET, grace_s=60)] == ["older", "old"]


def test_running_and_held_messages_renew_their_records_and_a_skip_renews_at_once():
    broker, leases = _Broker(), Leases(interval_s=1)
    leases.broker = broker  # type: ignore[assignment]
    running, held, skipped = _message("running"), _message("held"), _message("skipped")
    for message in (running, held, skipped):
        with session(transaction=True):
            tracks.start(ASSET, message.kwargs["asset_id"], message.kwargs, tracks.generation_of(message), 1)
        _age(message.kwargs["asset_id"], 600)
    leases.before_process_message(broker, running)  # type: ignore[arg-type]
    broker.held.append(held)
    assert leases.renew() == 2
    assert [c.asset_id for c in load_candidates(ASSET, grace_s=60)] == ["skipped"]
    leases.after_skip_message(broker, skipped)  # type: ignore[arg-type]
    assert load_candidates(ASSET, grace_s=60) == []
    leases.after_process_message(broker, running)  # type: ignore[arg-type]
    broker.held.clear()
    assert leases.renew() == 0
