"""Process settings, read from TAFLOW_* environment variables (and `.env`)."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

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
    invitation_response_days: int = 7
    invitation_token_days: int = 14
    dedup_window_days: int = 183
    sla_policy_file: Path | None = None
    """TOML file of SLA policies; unset: taflow/reference/sla.toml."""
    log_level: str = "INFO"

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
