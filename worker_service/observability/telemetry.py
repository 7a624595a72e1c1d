"""Process-wide telemetry: OpenTelemetry tracing (standard OTEL_* variables) and Sentry (SENTRY_DSN).

Tracing is on when ``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set (OTLP over HTTP; the SDK reads
``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``, sampling and the rest
itself), or ``OTEL_TRACES_EXPORTER=console``.  Outbound ``requests`` calls
get client spans.  Sentry uses its Dramatiq integration; secrets are scrubbed
from events before they leave the process.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from settings import SECRET_FIELDS, Settings
from worker_service.masking import mask

logger = logging.getLogger(__name__)
_configured = False


def configure_telemetry(settings: Settings, service_name: str = "worker") -> None:
    global _configured
    if _configured:
        return
    _configured = True
    _configure_tracing(service_name)
    if settings.sentry_dsn:
        _configure_sentry(settings)


def tracing_enabled() -> bool:
    """Whether the OTEL_* variables ask for traces (the tracing middleware is only installed then)."""
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get("OTEL_TRACES_EXPORTER") == "console"
    )


def _configure_tracing(service_name: str) -> None:
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get(
        "OTEL_EXPORTER_OTLP_ENDPOINT"
    )
    console = os.environ.get("OTEL_TRACES_EXPORTER") == "console"
    if not tracing_enabled():
        return
    from opentelemetry import trace
    from opentelemetry.sdk.resources import OTELResourceDetector, Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter

    resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)}).merge(
        OTELResourceDetector().detect()
    )
    provider = TracerProvider(resource=resource)
    if console:
        provider.add_span_processor(BatchSpanProcessor(ConsoleSpanExporter()))
    else:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter(), schedule_delay_millis=500))
    trace.set_tracer_provider(provider)
    try:
        from opentelemetry.instrumentation.requests import RequestsInstrumentor

        RequestsInstrumentor().instrument()
    except ImportError:  # pragma: no cover - a declared dependency
        logger.warning("opentelemetry-instrumentation-requests missing: outbound HTTP is not traced")
    logger.info("tracing on: OTLP %s", endpoint or "console")


def _configure_sentry(settings: Settings) -> None:
    import sentry_sdk
    from sentry_sdk.integrations.dramatiq import DramatiqIntegration

    secrets = tuple(
        str(getattr(settings, name))
        for name in SECRET_FIELDS
        if getattr(settings, name, None) and len(str(getattr(settings, name))) >= 4
    )

    def before_send(event: Any, hint: dict[str, Any]) -> Any:
        return mask(event, secrets=secrets, replacement="[Filtered]")

    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        integrations=[DramatiqIntegration()],
        send_default_pii=False,
        before_send=before_send,
        traces_sample_rate=0.0,
    )
    logger.info("Sentry on")
