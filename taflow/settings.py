"""Process settings, read from TAFLOW_* environment variables (and `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob a deployment may turn; defaults run the embedded dev stack."""

    model_config = SettingsConfigDict(env_prefix="TAFLOW_", env_file=".env", extra="ignore")

    database_url: str | None = None
    """SQLAlchemy URL (postgresql+asyncpg://...). Unset: the embedded PostgreSQL in `data_dir`."""
    temporal_address: str | None = None
    """host:port of a Temporal frontend. Unset: the embedded dev server on localhost:7233."""
    temporal_namespace: str = "default"
    task_queue: str = "taflow"
    data_dir: Path = Path(".data")
    api_host: str = "127.0.0.1"
    api_port: int = 8000
    temporal_port: int = 7233
    temporal_ui_port: int = 8233
    public_base_url: str = "http://localhost:8000"
    max_body_bytes: int = 65_536
    api_workers: int = Field(1, ge=1)
    """uvicorn worker processes serving the API (taflow.api.serve). The front door is one Python event
    loop per process; a host with CPUs to spare can give it more, so calls proceed while one process
    is busy. 1 (the default): a single process, no supervisor, no multiprocess metrics. On a 2-core
    host that also runs Temporal, PostgreSQL and the worker, a second process cost more CPU than it
    saved (figure 1 of `make bench`, 2026-11-29: API/raw 0.96 with one process, 0.82 with two;
    figure 2: 0.80 and 0.71). Above 1 the processes share the port, `/metrics` sums their counters
    (prometheus_client multiprocess mode) and the connection budget below is shared out among them."""
    api_db_pre_ping: bool = False
    """Test every pooled connection with a round trip before the API uses it. Off: a connection that a
    PostgreSQL restart dropped fails its one call with 503 (Retry-After) and the pool is renewed."""
    api_db_pool_size: int = Field(40, ge=1)
    """Connections the API keeps open at most, shared out among its `api_workers` processes
    (taflow.api.app.api_pool_share): each opens them as calls need them and keeps them. Keep it at or
    above the database calls the API makes at once: a call that finds none free waits until one is
    returned."""
    auth_cache_seconds: float = 5.0
    """How long the API trusts an API key it has looked up (per process); a revocation takes effect
    within this time. 0: look every key up on every call."""
    invitation_response_days: int = 7
    invitation_token_days: int = 14
    dedup_window_days: int = 183
    sla_policy_file: Path | None = None
    """TOML file of SLA policies; unset: taflow/reference/sla.toml."""
    log_level: str = "INFO"

    # -- operations (issue 7): logs, metrics, traces; see docs/operations.md
    log_format: Literal["json", "console"] = "json"
    """Every line one JSON object (request id, workflow id, run id); `console` for humans."""
    worker_metrics_host: str = "127.0.0.1"
    """Where the worker's Prometheus endpoint listens (SDK metrics and business metrics together)."""
    worker_metrics_port: int = 9464
    """Port of the worker's `/metrics`; 0 turns it off."""
    otel_exporter: Literal["none", "console", "otlp"] = "none"
    """Traces: off, printed to stdout, or sent over OTLP/HTTP to `otel_endpoint`."""
    otel_endpoint: str | None = None
    """OTLP/HTTP traces URL (e.g. http://otel-collector:4318/v1/traces); unset: OTEL_EXPORTER_OTLP_* env."""
    otel_service_name: str = "taflow"
    """Service name on spans; the process kind is appended (taflow-api, taflow-worker)."""
    temporal_tls: bool = False
    """TLS to the Temporal frontend (a cluster behind TLS; implied by an API key or a client cert)."""
    temporal_api_key: str | None = None
    """Temporal Cloud API key (sent as a bearer token over TLS)."""
    temporal_tls_cert: Path | None = None
    """PEM client certificate for mTLS (Temporal Cloud mTLS namespaces, self-hosted mTLS)."""
    temporal_tls_key: Path | None = None
    """PEM private key of `temporal_tls_cert`."""

    # -- front door (issue 6): idempotency, webhooks, OIDC; see docs/security.md and docs/webhooks.md
    idempotency_ttl_hours: int = 24
    """How long a successful answer is replayed for its Idempotency-Key."""
    idempotency_wait_seconds: float = 30.0
    """How long a retry waits for the first request with its key to finish before answering 409."""
    webhook_allow_http: bool = False
    """Accept `http://` webhook URLs (development and tests only; production needs https)."""
    webhook_timeout_seconds: float = 10.0
    webhook_max_attempts: int = 12
    """Attempts per delivery before it is dead-lettered (redeliverable by an admin)."""
    webhook_initial_interval_seconds: float = 5.0
    webhook_max_interval_seconds: float = 3600.0
    """Backoff doubles from the initial interval up to this; 12 attempts at the defaults span ~3 hours."""
    webhook_batch_size: int = 100
    webhook_poll_seconds: float = 1.0
    """How often the dispatcher looks for new outbox rows while it is idle."""
    webhook_idle_wait_seconds: float = 60.0
    """How long one claim activity waits for work before returning empty (fewer history events)."""
    oidc_issuer: str | None = None
    """`iss` that OIDC access tokens must carry; unset: only API keys are accepted."""
    oidc_audience: str | None = None
    """`aud` that tokens must carry (required when oidc_issuer is set)."""
    oidc_jwks_url: str | None = None
    """Where the issuer's JWKS is served (https), or use oidc_jwks_file."""
    oidc_jwks_file: Path | None = None
    oidc_algorithms: list[str] = ["RS256", "ES256", "PS256", "EdDSA"]
    oidc_subject_claim: str = "sub"
    oidc_organisation_claim: str = "taflow_org"
    oidc_role_claim: str = "taflow_role"
    """Claims naming the caller's organisation id and role (a string, or a list holding one known role)."""
    oidc_role_map: dict[str, str] = {}
    """The issuer's role names -> TAflow roles, e.g. {"ta-reviewer": "asec_reviewer"} (JSON in the env)."""
    oidc_leeway_seconds: int = 30

    @property
    def credentials_file(self) -> Path:
        return self.data_dir / "dev-credentials.json"

    @property
    def embedded_database_url_file(self) -> Path:
        return self.data_dir / "database-url"


@lru_cache
def get_settings() -> Settings:
    return Settings()


def resolve_database_url(settings: Settings) -> str:
    """The configured URL, else the embedded server's URL that the dev stack wrote to `data_dir`."""
    if settings.database_url:
        return settings.database_url
    path = settings.embedded_database_url_file
    if path.exists():
        return path.read_text().strip()
    raise RuntimeError(
        "No database: set TAFLOW_DATABASE_URL or start the dev stack (`make run`), "
        f"which writes the embedded server's URL to {path}"
    )
