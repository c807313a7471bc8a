"""Throw-away databases for evaluation runs and tests: embedded, or on an external server."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import make_url

from taflow.devstack import embedded_postgres_url


@contextmanager
def embedded_database(pgdata: Path | None = None) -> Iterator[str]:
    """A fresh embedded PostgreSQL in `pgdata` (a temporary folder if None), deleted afterwards."""
    from embedded_postgres.postgres_server import get_server

    tmp = None if pgdata else Path(tempfile.mkdtemp(prefix="taflow-pg-"))
    server = get_server(pgdata or (tmp / "pgdata"), cleanup_mode="delete")  # type: ignore[operator]
    try:
        yield embedded_postgres_url(server.get_uri())
    finally:
        server.cleanup()
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    u = make_url(url).set(drivername="postgresql")
    conn = await asyncpg.connect(u.render_as_string(hide_password=False))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def external_database(url: str) -> Iterator[str]:
    """Create `taflow_tmp_<random>` on the server behind `url`, yield its URL, drop it after."""
    base = make_url(url)
    if base.drivername == "postgresql":
        base = base.set(drivername="postgresql+asyncpg")
    admin = base.render_as_string(hide_password=False)
    name = f"taflow_tmp_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(admin, f'CREATE DATABASE "{name}"'))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(_admin(admin, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@contextmanager
def scratch_database(external_url: str | None) -> Iterator[str]:
    if external_url:
        with external_database(external_url) as url:
            yield url
    else:
        with embedded_database() as url:
            yield url
