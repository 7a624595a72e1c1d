"""middleware.tracing: one trace from the sender's `send` span to the worker's `process` span."""

from __future__ import annotations

import pytest
from dramatiq.broker import MessageProxy
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from middleware.tracing import OPTION, Tracing
from tests.support.units import proxy, stub_broker
from worker_service.outcome import Retrying, conclude


@pytest.fixture(scope="module")
def spans() -> InMemorySpanExporter:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)  # once per test process; nothing else here traces
    return exporter


def test_process_span_continues_the_senders_trace_and_records_the_outcome(spans):
    spans.clear()
    broker, tracing = stub_broker(), Tracing()
    sent = proxy("process_asset", queue="assets", kwargs={"asset_id": "a"})._message
    tracing.before_enqueue(broker, sent, None)
    tracing.after_enqueue(broker, sent, None)
    assert "traceparent" in sent.options[OPTION]
    delivered = MessageProxy(sent)
    tracing.before_process_message(broker, delivered)
    conclude(delivered, Retrying(0, "TransientError: 503"))
    tracing.after_process_message(broker, delivered, exception=RuntimeError("503"))
    send, process = sorted(spans.get_finished_spans(), key=lambda s: s.name != "send assets")
    assert (send.name, process.name) == ("send assets", "process assets")
    assert (
        process.context.trace_id == send.context.trace_id and process.parent.span_id == send.context.span_id
    )
    assert process.attributes["worker.outcome"] == "retrying"
    assert process.attributes["messaging.message.id"] == sent.message_id
    assert not process.status.is_ok
