"""worker_service.brokers.hooks: only the hooks a middleware defines are dispatched, in order, with Dramatiq's
error handling."""

from __future__ import annotations

from typing import Any

import dramatiq
import pytest
from dramatiq.brokers.stub import StubBroker
from dramatiq.middleware import Middleware, MiddlewareError

from worker_service.brokers.hooks import DefinedHooksDispatch


class _Recorder(Middleware):
    def __init__(self, name: str, calls: list[str]) -> None:
        self.name, self.calls = name, calls

    def before_process_message(self, broker: dramatiq.Broker, message: Any) -> None:
        self.calls.append(f"before:{self.name}")

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: Any,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
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
    broker = _DispatchBroker(
        middleware=[_Recorder("a", calls), plain, _Broken(), patched, _Recorder("b", calls)]
    )
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
