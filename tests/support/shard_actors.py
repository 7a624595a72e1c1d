"""Actors of the sharding test (`dramatiq actors tests.support.shard_actors`): ``relay`` on the queue ``tests``
(BROKER_URL's Redis) sends ``far`` on ``tests_far``, which the test puts on a Redis of its own (BROKER_SHARDS), as
``process_asset`` sends ``extract_knowledge`` from the assets queue to the knowledge queue."""

from __future__ import annotations

import dramatiq

from tests.support.worker_actors import _hold  # the production broker and middleware, and the test actors


@dramatiq.actor(queue_name="tests", max_attempts=3, retry_hours=1)
def relay(tag: str) -> None:
    far.send(tag)


@dramatiq.actor(queue_name="tests_far", max_attempts=3, retry_hours=1)
def far(tag: str) -> None:
    """Runs while the key <prefix>:hold exists (worker_actors._hold), then records completion."""
    _hold(tag)
