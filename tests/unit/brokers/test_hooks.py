"""The broker's hot path: group commit, blocking idle waits, wake-on-room, hook dispatch.

These are the changes behind the drain and latency numbers in docs/performance.rst; each test
provokes the behaviour against real Redis (db 11) and real threads, and asserts outcomes, not speed."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import dramatiq
import pytest
import redis
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, MiddlewareError

from worker_service.brokers.hooks import DefinedHooksDispatch
from worker_service.brokers.redis import ReliableRedisBroker, make_connection_pool


@pytest.fixture()
def broker(redis_url: str, redis_client: redis.Redis) -> Iterator[ReliableRedisBroker]:
    # The 12 s socket timeout lets an idle consumer block for 5 s (half of it, capped by its timeout).
    client = redis.Redis(connection_pool=make_connection_pool(redis_url, socket_timeout=12, health_check_interval=0,
                                                              connect_attempts=1))
    broker = ReliableRedisBroker(client=client, middleware=[])
    broker.declare_queue("hot")
    yield broker
    broker.close()


class _Recorder(Middleware):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.calls.append(f"before:{self.name}")

    def after_process_message(self, broker: dramatiq.Broker, message: Any, *, result: Any = None,
                              exception: BaseException | None = None) -> None:
        self.calls.append(f"after:{self.name}")


class _Broken(Middleware):
    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        raise ValueError("middleware bug")


class _Gate(Middleware):
    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        raise MiddlewareError("stop here")


class _DispatchBroker(DefinedHooksDispatch, StubBroker):
    pass


def test_hook_dispatch_skips_inherited_noops_keeps_order_and_dramatiq_error_handling(caplog):
    calls: list[str] = []
    patched = Middleware()
    patched.before_process_message = lambda broker, message: calls.append("before:patched")  # type: ignore[method-assign]
    plain = Middleware()
    broker = _DispatchBroker(middleware=[_Recorder("a", calls), plain, _Broken(), patched,
                                         _Recorder("b", calls)])
    broker.emit_before("process_message", None)
    broker.emit_after("process_message", None, result=None)
    assert calls == ["before:a", "before:patched", "before:b", "after:b", "after:a"]
    assert "Unexpected failure in before_process_message" in caplog.text
    assert [m for m, _ in broker._hooks_for("before_process_message")][1:2] == [broker.middleware[2]]
    assert plain not in [m for m, _ in broker._hooks_for("before_process_message")]

    calls.clear()
    broker.add_middleware(_Gate())
    with pytest.raises(MiddlewareError):
        broker.emit_before("process_message", None)
    assert calls == ["before:a", "before:patched", "before:b"]
