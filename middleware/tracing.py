"""OpenTelemetry traces across the queue: W3C context in message options, ``send``/``process`` spans.

Hooks: ``before_enqueue``/``after_enqueue`` (PRODUCER span ``send <queue>``,
context injected into ``options["trace_context"]``), ``before_process_message``
(CONSUMER span ``process <queue>``, parented to the sender's context and made
current, so log lines and outbound HTTP spans join it), ``after_process_message``
and ``after_skip_message`` (status, exception, end).  No actor options.

Attributes follow the messaging semantic conventions: ``messaging.system``,
``messaging.operation.name``/``.type``, ``messaging.destination.name``,
``messaging.message.id``; plus ``dramatiq.actor`` and the attempt number.
The worker_contracts sender creates the same ``send`` span in other services.
Exporters are configured by the standard ``OTEL_*`` variables (see
``configure_telemetry``).
"""

from __future__ import annotations

from typing import Any

import dramatiq
from dramatiq.broker import MessageProxy
from dramatiq.message import Message
from dramatiq.middleware import Middleware
from opentelemetry import context, propagate, trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from worker_service.observability.logs import reset_message_context, set_message_context
from worker_service.outcome import outcome_of, state_of

tracer = trace.get_tracer("worker.dramatiq")
OPTION = "trace_context"


class Tracing(Middleware):
    def __init__(self) -> None:
        self._producer_spans: dict[str, Any] = {}

    def before_enqueue(self, broker: dramatiq.Broker, message: Message, delay: int | None) -> None:
        queue = message.queue_name.removesuffix(".DQ")
        span = tracer.start_span(
            f"send {queue}",
            kind=SpanKind.PRODUCER,
            attributes={
                "messaging.system": "dramatiq",
                "messaging.operation.name": "send",
                "messaging.operation.type": "send",
                "messaging.destination.name": queue,
                "messaging.message.id": message.message_id,
                "dramatiq.actor": message.actor_name,
            },
        )
        carrier: dict[str, str] = {}
        propagate.inject(carrier, context=trace.set_span_in_context(span))
        message.options[OPTION] = carrier
        self._producer_spans[message.message_id] = span

    def after_enqueue(self, broker: dramatiq.Broker, message: Message, delay: int | None) -> None:
        span = self._producer_spans.pop(message.message_id, None)
        if span is not None:
            span.end()

    def before_process_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        parent = propagate.extract(message.options.get(OPTION) or {})
        queue = message.queue_name.removesuffix(".DQ")
        span = tracer.start_span(
            f"process {queue}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "dramatiq",
                "messaging.operation.name": "process",
                "messaging.operation.type": "process",
                "messaging.destination.name": queue,
                "messaging.message.id": message.message_id,
                "dramatiq.actor": message.actor_name,
                "dramatiq.attempt": int(message.options.get("retries", 0)) + 1,
            },
        )
        token = context.attach(trace.set_span_in_context(span))
        ctx = span.get_span_context()
        log_token = set_message_context(
            trace_id=format(ctx.trace_id, "032x"), span_id=format(ctx.span_id, "016x")
        )
        state_of(message).trace = (span, token, log_token)

    def _finish(self, message: MessageProxy, exception: BaseException | None, skipped: bool) -> None:
        message_state = state_of(message)
        trace_state, message_state.trace = message_state.trace, None
        if trace_state is None:
            return
        span, token, log_token = trace_state
        outcome = outcome_of(message)
        if outcome is not None:
            span.set_attribute("worker.outcome", type(outcome).__name__.lower())
        if skipped:
            span.set_attribute("worker.skipped", True)
        if exception is not None:
            span.record_exception(exception)
            span.set_status(Status(StatusCode.ERROR, str(exception)[:200]))
        span.end()
        reset_message_context(log_token)
        context.detach(token)

    def after_process_message(
        self,
        broker: dramatiq.Broker,
        message: MessageProxy,
        *,
        result: Any = None,
        exception: BaseException | None = None,
    ) -> None:
        self._finish(message, exception, skipped=False)

    def after_skip_message(self, broker: dramatiq.Broker, message: MessageProxy) -> None:
        self._finish(message, None, skipped=True)
