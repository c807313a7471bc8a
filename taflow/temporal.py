"""One way to reach Temporal: the same data converter on clients, workers and the Replayer."""

from __future__ import annotations

from collections.abc import Sequence

from temporalio.client import Client, Interceptor
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.runtime import Runtime
from temporalio.service import TLSConfig

from taflow.settings import Settings

DATA_CONVERTER = pydantic_data_converter


def workflow_id(request_id: str) -> str:
    """Business key of a request's workflow."""
    return f"ta-request-{request_id}"


def invitation_workflow_id(invitation_id: str) -> str:
    return f"ta-invitation-{invitation_id}"


async def connect(
    settings: Settings, *, runtime: Runtime | None = None, interceptors: Sequence[Interceptor] | None = None
) -> Client:
    """The process's client; `runtime` carries the worker's metrics, `interceptors` default to the
    tracing interceptor when TAFLOW_OTEL_EXPORTER is on."""
    if interceptors is None:
        from taflow.observability.tracing import client_interceptors  # not for workflow sandboxes

        interceptors = client_interceptors(settings)
    address = settings.temporal_address or f"localhost:{settings.temporal_port}"
    return await Client.connect(
        address,
        namespace=settings.temporal_namespace,
        data_converter=DATA_CONVERTER,
        interceptors=interceptors,
        runtime=runtime,
        tls=tls_config(settings),
        api_key=settings.temporal_api_key,
    )


def tls_config(settings: Settings) -> TLSConfig | bool:
    """mTLS with a client certificate, plain TLS (a cluster behind TLS, Temporal Cloud API keys), or none."""
    if settings.temporal_tls_cert is not None or settings.temporal_tls_key is not None:
        if settings.temporal_tls_cert is None or settings.temporal_tls_key is None:
            raise ValueError("TAFLOW_TEMPORAL_TLS_CERT and TAFLOW_TEMPORAL_TLS_KEY go together")
        return TLSConfig(
            client_cert=settings.temporal_tls_cert.read_bytes(),
            client_private_key=settings.temporal_tls_key.read_bytes(),
        )
    return settings.temporal_tls or settings.temporal_api_key is not None
