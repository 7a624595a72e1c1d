"""Message context for every log line written while a message runs.

Hooks: ``before_process_message`` binds message_id, actor, queue and
asset_id (when the payload has one) into the logging context
(logsetup.bind); ``after_process_message``/``after_skip_message`` unbind.
The tracing middleware adds trace_id and span_id to the same context.
No actor options.
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.middleware import Middleware

from worker_service.observability.logs import reset_message_context, set_message_context
from worker_service.outcome import state_of


class LogContext(Middleware):
    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        kwargs = message.kwargs if isinstance(message.kwargs, dict) else {}
        asset_id = kwargs.get("asset_id")
        state_of(message).log_token = set_message_context(
            message_id=message.message_id,
            actor=message.actor_name,
            queue=message.queue_name,
            asset_id=asset_id if isinstance(asset_id, str) else None,
        )

    def _reset(self, message: MessageProxy) -> None:
        state = state_of(message)
        token, state.log_token = state.log_token, None
        if token is not None:
            reset_message_context(token)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._reset(message)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._reset(message)
