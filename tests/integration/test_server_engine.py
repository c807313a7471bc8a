"""The API's and the worker's engines keep every connection they open (make_server_engine): a second
burst of concurrent calls reuses the first burst's PostgreSQL sessions instead of starting new ones."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from taflow.db.prepared import Prepared, pooled
from taflow.db.session import make_engine, make_server_engine

BACKEND_PID = Prepared.of(select(func.pg_backend_pid()))
BURST = 6


async def burst(engine: AsyncEngine) -> set[int]:
    """The backends serving BURST calls that hold their connections at the same time."""
    together = asyncio.Barrier(BURST)

    async def call() -> int:
        async with pooled(engine) as connection:
            rows = await BACKEND_PID.fetch(connection, {})
            await together.wait()  # every connection is out at once
            return int(rows[0][0])

    return set(await asyncio.gather(*(call() for _ in range(BURST))))


async def test_a_server_engine_reuses_its_sessions_burst_after_burst(database_url: str) -> None:
    engine = make_server_engine(database_url, connections=BURST, pre_ping=False)
    try:
        first = await burst(engine)
        second = await burst(engine)
    finally:
        await engine.dispose()
    assert len(first) == BURST
    assert second == first


async def test_a_pool_with_burst_connections_starts_sessions_again(database_url: str) -> None:
    """What make_server_engine avoids: connections beyond the pool are closed on return."""
    engine = make_engine(database_url, pool_size=2, max_overflow=BURST - 2, pre_ping=False)
    try:
        first = await burst(engine)
        second = await burst(engine)
    finally:
        await engine.dispose()
    assert len(first) == len(second) == BURST
    assert len(second - first) == BURST - 2
