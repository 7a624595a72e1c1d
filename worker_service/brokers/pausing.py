"""Queues paused fleet-wide by an operator, kept in a Redis set both brokers read.

On Redis it is the broker's own Redis; on RabbitMQ, the Redis every RabbitMQ deployment already has for its
rate limits (RATELIMIT_REDIS_URL).  Consumers read the set at most every :data:`PAUSE_READ_S`, so a pause or a
resume reaches the whole fleet within about a second; while Redis is unreachable the last answer stands.
"""

from __future__ import annotations

import time
from typing import Any

import redis

PAUSE_READ_S = 1.0  # a pause or resume reaches every consumer within this (plus one fetch)
_REDIS_ERRORS = (redis.ConnectionError, redis.TimeoutError)


class PausedQueues:
    """The set ``<ns>:__paused_queues__``.

    Parameters:
      client: a ``redis.Redis`` client.
      key(str): the set's key.
    """

    def __init__(self, client: Any, key: str) -> None:
        self.client = client
        self.key = key
        self._paused: frozenset[str] = frozenset()
        self._read_at = float("-inf")

    def current(self) -> frozenset[str]:
        """The paused queues, read at most every PAUSE_READ_S."""
        now = time.monotonic()
        if now - self._read_at >= PAUSE_READ_S:
            self._read_at = now
            try:
                self._paused = frozenset(
                    q.decode() if isinstance(q, bytes) else str(q) for q in self.client.smembers(self.key)
                )
            except _REDIS_ERRORS:
                pass
        return self._paused

    def set(self, queue_name: str, paused: bool) -> bool:
        """Pause or resume ``queue_name`` for the whole fleet; False if it already was."""
        changed = self.client.sadd(self.key, queue_name) if paused else self.client.srem(self.key, queue_name)
        self._read_at = float("-inf")
        return bool(changed)
