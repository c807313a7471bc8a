"""OpenTelemetry traces: one trace from the HTTP call through the workflow to each activity.

The FastAPI instrumentation opens the server span; the SDK's TracingInterceptor on the client
carries its context into the workflow's headers, and on the worker (the client's interceptors
apply to workers built on it) opens the workflow, update, signal and activity spans under it.
Off by default (`TAFLOW_OTEL_EXPORTER=none`): no provider, no interceptor, no middleware.
"""

from __future__ import annotations

from collections.abc import Sequence

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    ConsoleSpanExporter,
    SimpleSpanProcessor,
    SpanExporter,
)
from temporalio.client import Interceptor
from temporalio.contrib.opentelemetry import TracingInterceptor

from taflow.settings import Settings

EXCLUDED_URLS = "healthz,metrics"
"""Probes and scrapes make no traces."""

_installed: TracerProvider | None = None


def tracing_enabled(settings: Settings) -> bool:
    return settings.otel_exporter != "none"


def make_exporter(settings: Settings) -> SpanExporter | None:
    if settings.otel_exporter == "console":
        return ConsoleSpanExporter()
    if settings.otel_exporter == "otlp":
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_endpoint
        return OTLPSpanExporter(endpoint=endpoint) if endpoint else OTLPSpanExporter()
    return None


def make_provider(service_name: str, exporter: SpanExporter, *, batch: bool = True) -> TracerProvider:
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: service_name}))
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    return provider


def setup_tracing(settings: Settings, process: str) -> TracerProvider | None:
    """Install the process-wide tracer provider for `process` (api, worker), once; None when off."""
    global _installed
    if _installed is not None:
        return _installed
    exporter = make_exporter(settings)
    if exporter is None:
        return None
    _installed = make_provider(f"{settings.otel_service_name}-{process}", exporter)
    trace.set_tracer_provider(_installed)
    return _installed


def client_interceptors(settings: Settings, provider: TracerProvider | None = None) -> list[Interceptor]:
    """The SDK's TracingInterceptor when tracing is on (it also intercepts workers built on the client)."""
    if provider is not None:
        return [TracingInterceptor(provider.get_tracer("taflow"))]
    if tracing_enabled(settings):
        return [TracingInterceptor()]  # the global provider set by setup_tracing
    return []


def instrument_app(app: FastAPI, provider: TracerProvider | None = None) -> None:
    """Server spans for every HTTP call (route template as span name), before the app starts."""
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    FastAPIInstrumentor.instrument_app(app, tracer_provider=provider, excluded_urls=EXCLUDED_URLS)


def has_tracing_interceptor(interceptors: Sequence[object]) -> bool:
    return any(isinstance(i, TracingInterceptor) for i in interceptors)
