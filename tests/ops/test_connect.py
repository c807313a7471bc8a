"""How the processes reach Temporal past one host: TLS, Temporal Cloud API keys, mTLS certificates."""

from __future__ import annotations

from pathlib import Path

import pytest
from temporalio.service import TLSConfig

from taflow.observability.tracing import client_interceptors
from taflow.settings import Settings
from taflow.temporal import tls_config


def test_plain_tls_api_key_and_mtls(tmp_path: Path) -> None:
    assert tls_config(Settings()) is False
    assert tls_config(Settings(temporal_tls=True)) is True
    assert tls_config(Settings(temporal_api_key="cloud-key")) is True
    cert, key = tmp_path / "client.pem", tmp_path / "client.key"
    cert.write_bytes(b"CERT")
    key.write_bytes(b"KEY")
    mtls = tls_config(Settings(temporal_tls_cert=cert, temporal_tls_key=key))
    assert isinstance(mtls, TLSConfig)
    assert (mtls.client_cert, mtls.client_private_key) == (b"CERT", b"KEY")
    with pytest.raises(ValueError, match="go together"):
        tls_config(Settings(temporal_tls_cert=cert))


def test_tracing_interceptor_only_when_tracing_is_on() -> None:
    assert client_interceptors(Settings()) == []
    assert len(client_interceptors(Settings(otel_exporter="console"))) == 1
